"""Wake the quiet autoscaler the moment a task reaches a queue it scales.

A quiet cluster is polled every `autoscaling.interval` seconds, so an unannounced burst waited
half an interval on average before anyone saw it. The broker already knows: Celery's Redis
transport pushes every task onto a list named after the queue (one list per priority step),
and Redis publishes each push as a keyspace notification when `notify-keyspace-events` asks
for list events (airscale's own Redis does: airscale.runtime.redis). The loop waits on those
notifications instead of sleeping; the interval stays the upper bound, and without
notifications (an external broker configured without them) it is plain polling, as before.
"""

from __future__ import annotations

import logging
import threading
import time

import redis as redis_client

from airscale.autoscale.signals import priority_keys

log = logging.getLogger(__name__)

# The Redis list commands that put a message on a queue (Kombu uses LPUSH; the rest for
# completeness: a restored message goes back with a push too).
PUSH_EVENTS = frozenset({b"lpush", b"rpush", b"lpushx", b"rpushx", b"linsert", b"lmove", b"rpoplpush"})
# How often a wait looks at the stop event (a SIGTERM ends the loop within this).
STOP_CHECK_S = 0.5


def notifications_on(flags: str) -> bool:
    """Does a `notify-keyspace-events` value publish list pushes on keyspace channels? (pure)"""
    return "K" in flags and ("l" in flags or "A" in flags)


def channels(queues: list[str], db: int) -> list[str]:
    """The keyspace channels of every list a task for one of `queues` can be pushed on (pure)."""
    return [f"__keyspace@{db}__:{key}" for q in queues for key in priority_keys(q)]


class BrokerWakeup:
    """Subscribed to the queues' keyspace channels; `wait` returns early on a push."""

    def __init__(self, client: redis_client.Redis, queues: list[str]):
        self._client = client
        self._channels: list[str] = []
        self._pubsub = None
        try:
            flags = client.config_get("notify-keyspace-events").get("notify-keyspace-events", "")
        except redis_client.RedisError as e:  # CONFIG may be renamed or forbidden on a managed broker
            log.info("broker wake-up off (%s): the quiet cluster is polled at the interval", e)
            return
        if not notifications_on(str(flags)):
            log.info("broker wake-up off: the broker's notify-keyspace-events (%r) does not publish list "
                     "pushes; set it to 'Kl' to see bursts without waiting for the next poll", flags)
            return
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        self._channels = channels(queues, db)
        log.info("broker wake-up on: a task pushed on %s wakes the quiet loop", ", ".join(queues))

    @property
    def active(self) -> bool:
        return bool(self._channels)

    def _subscribed(self):
        if self._pubsub is None:
            # Subscribe confirmations are read and skipped here (`_next`), not by redis-py, which
            # would return them as None, like "nothing waiting".
            self._pubsub = self._client.pubsub()
            self._pubsub.subscribe(*self._channels)
        return self._pubsub

    def _next(self, timeout: float) -> dict | None:
        """The next message, None once nothing arrives within `timeout`."""
        return self._subscribed().get_message(timeout=timeout)

    @staticmethod
    def _is_push(msg: dict) -> bool:
        return msg.get("type") == "message" and msg.get("data") in PUSH_EVENTS

    def drain(self) -> bool:
        """Forget the pushes seen so far (the iteration that just ran read the queues after
        most of them); True if there were any."""
        seen = False
        if not self.active:
            return seen
        try:
            while (msg := self._next(0.0)) is not None:
                seen = seen or self._is_push(msg)
        except redis_client.RedisError:
            self.close()
        return seen

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Wait up to `seconds`, or until a push or `stop`; True if a push ended the wait."""
        if not self.active:
            stop.wait(seconds)
            return False
        deadline = time.monotonic() + seconds
        try:
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                msg = self._next(min(left, STOP_CHECK_S))
                if msg is not None and self._is_push(msg):
                    return True
        except redis_client.RedisError as e:
            # The broker restarting: this wait polls; the next one subscribes again.
            log.warning("broker wake-up lost its subscription (%s); polling until it is back", e)
            self.close()
            stop.wait(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except redis_client.RedisError:
                pass
            self._pubsub = None
