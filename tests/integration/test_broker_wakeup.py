"""The autoscaler's broker wake-up (airscale.autoscale.wakeup) against a real Redis.

Redis listens on a unix socket only. With list keyspace events (as airscale's own Redis is
configured), a push on a scaled queue's list ends the quiet wait at once; pushes on other
lists do not; without the events the wake-up stays off and the wait is the plain interval.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis

from airscale.autoscale.signals import priority_keys
from airscale.autoscale.wakeup import BrokerWakeup, channels, notifications_on
from airscale.runtime.layout import Layout
from airscale.runtime.redis import render_redis_conf
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _our_flags() -> str:
    """The notify-keyspace-events line of the redis.conf airscale writes."""
    spec = Spec.model_validate({"cluster": {"name": "w"}})
    conf = render_redis_conf(spec, Layout(Path("/tmp/unused")), Secrets.generate())
    return next(line.split()[1] for line in conf.splitlines() if line.startswith("notify-keyspace-events"))


@pytest.fixture(params=["airscale", "off"])
def broker(request):
    d = Path(tempfile.mkdtemp(prefix="airscale-wakeup-", dir="/tmp"))
    sock = d / "redis.sock"
    flags = _our_flags() if request.param == "airscale" else ""
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(d), "--notify-keyspace-events", flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=3)
    end = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    try:
        yield request.param, client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        subprocess.run(["rm", "-rf", str(d)], check=False)


def _push_later(client: redis.Redis, key: str, after: float) -> threading.Timer:
    t = threading.Timer(after, lambda: client.lpush(key, b"message"))
    t.start()
    return t


def test_a_push_on_a_scaled_queue_ends_the_wait(broker) -> None:
    mode, client = broker
    wakeup = BrokerWakeup(client, ["default", "etl"])
    try:
        assert wakeup.active is (mode == "airscale")
        stop = threading.Event()
        # A push on another list does not wake; one on any priority list of a scaled queue does.
        pushes = [_push_later(client, "unrelated", 0.2), _push_later(client, priority_keys("etl")[-1], 0.6)]
        t0 = time.monotonic()
        woken = wakeup.wait(3.0, stop)
        waited = time.monotonic() - t0
        for t in pushes:  # the push's reply is read before the broker goes
            t.join()
        if mode == "airscale":
            assert woken and 0.5 < waited < 1.5, waited
        else:
            assert not woken and waited >= 2.9, waited
    finally:
        wakeup.close()


def test_drain_forgets_pushes_already_seen(broker) -> None:
    mode, client = broker
    wakeup = BrokerWakeup(client, ["default"])
    try:
        assert not wakeup.drain()
        client.lpush("default", b"a")
        client.lpush("default", b"b")
        time.sleep(0.2)
        assert wakeup.drain() is (mode == "airscale")
        assert not wakeup.drain()
        t0 = time.monotonic()
        assert not wakeup.wait(0.8, threading.Event())
        assert time.monotonic() - t0 >= 0.75
    finally:
        wakeup.close()


def test_stop_ends_the_wait(broker) -> None:
    _, client = broker
    wakeup = BrokerWakeup(client, ["default"])
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    try:
        assert not wakeup.wait(30.0, stop)
        assert time.monotonic() - t0 < 2.0
    finally:
        wakeup.close()


@pytest.mark.parametrize(
    "flags, on",
    [("Kl", True), ("KEA", True), ("AK", True), ("El", False), ("K", False), ("", False), ("Kg$", False)],
)
def test_notifications_on(flags: str, on: bool) -> None:
    assert notifications_on(flags) is on


def test_channels_cover_every_priority_list() -> None:
    chans = channels(["default", "etl"], 3)
    assert len(chans) == 2 * len(priority_keys("default"))
    assert "__keyspace@3__:default" in chans and all(c.startswith("__keyspace@3__:") for c in chans)
