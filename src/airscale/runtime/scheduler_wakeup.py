"""Wake the scheduler when something it must act on happens, instead of polling for it.

Airflow's scheduler sleeps `scheduler_idle_sleep_time` after a loop that did nothing, so a
short sleep buys latency (the next task of a chain is queued sooner) with CPU spent polling
a quiet database. Here the metadata database says when to look: triggers on Airflow's tables
send a PostgreSQL NOTIFY on the changes a scheduler acts on, and the scheduler, instead of
sleeping, waits on a LISTEN connection for up to a long sleep.

    task_instance  a task ended (success, failed, skipped, upstream_failed, up_for_retry,
                   up_for_reschedule, removed) or was deferred (its slot is free), a deferred
                   task resumed (deferred -> scheduled), a task was cleared (-> no state)
    dag_run        a run was created (the REST API, a backfill) or queued again (cleared)
    dag            a DAG was unpaused
    asset_dag_run_queue  an asset event queued a run

The signal comes from the database rather than from the worker or the api-server because
every path that changes these rows (the Execution API, the REST API, the triggerer, another
scheduler, the UI, a `psql` session) ends in one of these tables; a NOTIFY is delivered on
commit, so the scheduler never wakes before the change is visible. Identical notifications of
one transaction are folded into one by PostgreSQL.

Nothing depends on a notification arriving: a lost one (the LISTEN connection broke, the
primary failed over) costs at most the long sleep, as the loop still runs after it. While the
connection is down the scheduler sleeps the plan's short idle sleep and reconnects. A cron DAG
run is not an event: the sleep ends when the earliest one is due. Changes that are neither
(a retry delay running out) are seen within the long sleep, which the loop's own timers
(pool metrics, heartbeat checks) bound further.

`install` replaces `time` in Airflow's scheduler module with a proxy whose `sleep`, called from
`_run_scheduler_loop`, waits for a notification; everything else of `time` is the module
itself. Installed by airscale.runtime.airflow_entry when `[airscale] scheduler_event_wakeup`
is true (the plan sets it); it then replaces pacing (airscale.runtime.scheduler_pacing).
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import sys
import time as _time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

CHANNEL = "airscale_scheduler"
FUNCTION = "airscale_wake_scheduler"
LOCK_KEY = 0x61697273  # pg_advisory_xact_lock: two schedulers starting at once install once

# Task instance states after which a scheduler has something to do: a slot is free, a
# downstream task may run, the run may be done.
ENDED_STATES = ("success", "failed", "skipped", "upstream_failed", "up_for_retry",
                "up_for_reschedule", "removed", "deferred")


@dataclass(frozen=True)
class WakeTrigger:
    name: str
    table: str
    event: str  # the trigger's event clause
    when: str  # the row condition

    def sql(self) -> str:
        return (f"CREATE OR REPLACE TRIGGER {self.name} AFTER {self.event} ON {self.table} "
                f"FOR EACH ROW WHEN ({self.when}) EXECUTE FUNCTION {FUNCTION}()")


_ended = ", ".join(f"'{s}'" for s in ENDED_STATES)
TRIGGERS = (
    WakeTrigger("airscale_wake_task_instance", "task_instance", "UPDATE OF state",
                f"OLD.state IS DISTINCT FROM NEW.state AND (NEW.state IN ({_ended}) OR NEW.state IS NULL "
                "OR (OLD.state = 'deferred' AND NEW.state = 'scheduled'))"),
    WakeTrigger("airscale_wake_dag_run_created", "dag_run", "INSERT", "NEW.state = 'queued'"),
    WakeTrigger("airscale_wake_dag_run_queued", "dag_run", "UPDATE OF state",
                "OLD.state IS DISTINCT FROM NEW.state AND NEW.state = 'queued'"),
    WakeTrigger("airscale_wake_dag_unpaused", "dag", "UPDATE OF is_paused", "OLD.is_paused AND NOT NEW.is_paused"),
    WakeTrigger("airscale_wake_asset_queue", "asset_dag_run_queue", "INSERT", "true"),
)


def _definition() -> list[str]:
    return [
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$",
        *(t.sql() for t in TRIGGERS),
    ]


# Stored as the function's comment: a scheduler finding it (and every trigger) skips the DDL,
# whose table locks would queue behind a long transaction on Airflow's tables.
VERSION = "airscale-wakeup " + hashlib.sha1("\n".join(_definition()).encode()).hexdigest()[:12]
INSTALLED_SQL = (f"SELECT obj_description(to_regprocedure('{FUNCTION}()'), 'pg_proc') = %s "
                 "AND (SELECT count(*) FROM pg_trigger WHERE tgname = ANY(%s)) = %s")


def install_sql() -> list[str]:
    """Statements that (re)create the function and the triggers, idempotent (PostgreSQL 14+), in
    one transaction that gives up rather than wait long for a table lock."""
    return [
        "SET LOCAL lock_timeout = '2s'",
        f"SELECT pg_advisory_xact_lock({LOCK_KEY})",
        *_definition(),
        f"COMMENT ON FUNCTION {FUNCTION}() IS '{VERSION}'",
    ]


def installed_params() -> tuple[str, list[str], int]:
    return VERSION, [t.name for t in TRIGGERS], len(TRIGGERS)


def drop_sql() -> str:
    """One statement that removes the triggers, where their tables exist. Run before `airflow db
    migrate`: PostgreSQL refuses to change the type of a column a trigger's WHEN clause uses, so
    a migration that alters `state` would fail; the schedulers create them again at start."""
    drops = " ".join(f"IF to_regclass('{t.table}') IS NOT NULL THEN "
                     f"EXECUTE 'DROP TRIGGER IF EXISTS {t.name} ON {t.table}'; END IF;" for t in TRIGGERS)
    return f"DO $$ BEGIN {drops} END $$"


NEXT_RUN_SQL = ("SELECT EXTRACT(EPOCH FROM min(next_dagrun_create_after) - now()) FROM dag "
                "WHERE NOT is_paused AND NOT is_stale AND next_dagrun_create_after > now()")


def wait_seconds(requested: float, listening: bool, short_sleep: float, next_run_in: float | None) -> float:
    """How long an idle scheduler loop waits (pure).

    `requested` is what the loop asks for: the long sleep, or less when one of its timers is
    due sooner. Without a listening connection no event can cut the wait short, so it is the
    plan's short idle sleep; a cron run due sooner ends it (it is not an event).
    """
    wait = requested if listening else min(requested, short_sleep)
    if next_run_in is not None and next_run_in >= 0:
        wait = min(wait, next_run_in)
    return max(0.0, wait)


def reconnect_delay(failures: int) -> float:
    """Seconds before the next connection attempt after `failures` in a row (pure)."""
    return min(30.0, 0.5 * 2 ** max(0, failures - 1))


class Listener:
    """A LISTEN connection of its own (autocommit, outside Airflow's pool, never through
    PgBouncer: a transaction-pooled connection does not keep LISTEN)."""

    def __init__(self, connect: Callable[[], Any], clock: Callable[[], float] = _time.monotonic) -> None:
        self._connect = connect
        self._clock = clock
        self.conn: Any = None
        self.failures = 0
        self.retry_at = 0.0
        self._pid = os.getpid()
        self._orphans: list[Any] = []  # connections inherited by a forked child: never closed there

    @property
    def listening(self) -> bool:
        return self.conn is not None and self._pid == os.getpid()

    def ensure(self) -> bool:
        """Connect, install the triggers and LISTEN, unless connected or backing off."""
        if self._pid != os.getpid():  # a forked child (LocalExecutor): not our connection
            if self.conn is not None:
                self._orphans.append(self.conn)  # closing it would end the parent's session
            self.conn, self._pid = None, os.getpid()
            return False
        if self.conn is not None:
            return True
        if self._clock() < self.retry_at:
            return False
        conn = None
        try:
            conn = self._connect()
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute(INSTALLED_SQL, installed_params())
                row = cur.fetchone()
                if not (row and row[0]):
                    for stmt in install_sql():
                        cur.execute(stmt)
            conn.commit()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
        except Exception as e:
            self.failures += 1
            self.retry_at = self._clock() + reconnect_delay(self.failures)
            log.warning("airscale event wake-up: no LISTEN connection (%s); sleeping the short idle "
                        "sleep, retrying in %.1f s", str(e).strip().splitlines()[0] if str(e) else e,
                        reconnect_delay(self.failures))
            _close(conn)
            return False
        if self.failures:
            log.info("airscale event wake-up: listening again after %d failed attempt(s)", self.failures)
        self.conn, self.failures = conn, 0
        return True

    def drop(self, why: Exception) -> None:
        log.warning("airscale event wake-up: LISTEN connection lost (%s); reconnecting", why)
        _close(self.conn)
        self.conn = None
        self.failures = 1
        self.retry_at = self._clock() + reconnect_delay(1)

    def next_run_in(self) -> float | None:
        """Seconds until the earliest cron DAG run is due (None: none, or not readable)."""
        if not self.listening:
            return None
        try:
            with self.conn.cursor() as cur:
                cur.execute(NEXT_RUN_SQL)
                row = cur.fetchone()
        except Exception as e:
            self.drop(e)
            return None
        return float(row[0]) if row and row[0] is not None else None

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for a notification; True when one came. A notification that
        arrived while the loop ran ends the wait at once: the loop may not have seen it."""
        if seconds <= 0 or not self.listening:
            return False
        try:
            self.conn.poll()
            if not self.conn.notifies:
                ready, _, _ = select.select([self.conn], [], [], seconds)
                if ready:
                    self.conn.poll()
            woke = bool(self.conn.notifies)
            self.conn.notifies.clear()
        except Exception as e:
            self.drop(e)
            return False
        return woke


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass


class LoopTime:
    """`time` for Airflow's scheduler module: the loop's idle sleep waits for an event."""

    def __init__(self, listener: Listener, short_sleep: float) -> None:
        self.listener = listener
        self.short_sleep = short_sleep  # without a connection: the plan's idle sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    def sleep(self, seconds: float) -> None:
        if sys._getframe(1).f_code.co_name != "_run_scheduler_loop":
            _time.sleep(seconds)
            return
        if seconds <= 0:
            return  # the loop's timers are due: no wait, nothing to read for one
        try:
            listening = self.listener.ensure()
            wait = wait_seconds(seconds, listening, self.short_sleep, self.listener.next_run_in())
            start = _time.monotonic()
            if not self.listener.wait(wait):
                # No event (or no connection): sleep what is left, as the stock loop would.
                _time.sleep(max(0.0, wait - (_time.monotonic() - start)))
        except Exception:  # never stop the scheduler
            log.warning("airscale event wake-up failed; sleeping %.2f s", seconds, exc_info=True)
            _time.sleep(min(seconds, self.short_sleep))


# A connection to a dead server must fail within seconds, not TCP's minutes, and no statement may
# hold the scheduler's loop long: the idle loop reads the next cron run on it (libpq keepalive
# and user-timeout parameters, a statement timeout).
CONNECT_OPTIONS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                   "keepalives_count": 3, "tcp_user_timeout": 10000, "application_name": "airscale-wakeup",
                   "options": "-c statement_timeout=5000"}


def sqlalchemy_connect(url: str) -> Callable[[], Any]:
    """A connect function for `url` (a SQLAlchemy URL, as in airflow.cfg): a DB-API connection
    of the URL's driver, outside any pool, with the URL's host, port, credentials and options."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    dialect = create_engine(url).dialect  # connects nothing
    cargs, cparams = dialect.create_connect_args(make_url(url))

    def connect() -> Any:
        return dialect.loaded_dbapi.connect(*cargs, **{**CONNECT_OPTIONS, **cparams})

    return connect


def install(url: str, long_sleep: float) -> None:
    """Make the scheduler loop's idle sleep wait on `url`'s notifications, for at most
    `long_sleep` seconds (the loop's timers may ask for less)."""
    from airflow.jobs import scheduler_job_runner
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    if isinstance(scheduler_job_runner.time, LoopTime):
        return
    original_init = SchedulerJobRunner.__init__
    loop_time = LoopTime(Listener(sqlalchemy_connect(url)), short_sleep=1.0)  # set by __init__ below

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # The loop sleeps min(this, next timer): the long sleep while an event can cut it
        # short; the plan's idle sleep stays the fallback without a connection.
        loop_time.short_sleep = self._scheduler_idle_sleep_time
        self._scheduler_idle_sleep_time = long_sleep
        log.info("airscale event wake-up: the scheduler waits up to %.1f s for a change in the "
                 "metadata database (NOTIFY %s), %.2f s without a connection",
                 long_sleep, CHANNEL, loop_time.short_sleep)

    SchedulerJobRunner.__init__ = __init__
    scheduler_job_runner.time = loop_time
