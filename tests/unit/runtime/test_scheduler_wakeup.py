"""The scheduler's event wake-up (airscale.runtime.scheduler_wakeup): the wait of an idle loop,
the reconnect back-off, the SQL it installs, and the listener and loop proxy against fake
connections (a real PostgreSQL is in tests/integration/test_cluster.py)."""

from __future__ import annotations

import os
import types

import pytest

from airscale.runtime import scheduler_wakeup as w


@pytest.mark.parametrize(
    "requested, listening, short, next_run, expected",
    [
        pytest.param(5.0, True, 0.2, None, 5.0, id="listening-waits-the-long-sleep"),
        pytest.param(3.0, True, 0.2, None, 3.0, id="a-timer-due-sooner"),
        pytest.param(5.0, False, 0.2, None, 0.2, id="no-connection-short-sleep"),
        pytest.param(5.0, True, 0.2, 1.5, 1.5, id="cron-run-due-sooner"),
        pytest.param(5.0, True, 0.2, 9.0, 5.0, id="cron-run-later"),
        pytest.param(5.0, True, 0.2, -1.0, 5.0, id="overdue-run-is-not-a-reason-to-spin"),
        pytest.param(0.0, True, 0.2, None, 0.0, id="timer-due-now"),
        pytest.param(5.0, False, 0.2, 0.1, 0.1, id="cron-run-without-connection"),
    ],
)
def test_wait_seconds(requested, listening, short, next_run, expected):
    assert w.wait_seconds(requested, listening, short, next_run) == expected


@pytest.mark.parametrize("failures, delay", [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0)])
def test_reconnect_delay(failures, delay):
    assert w.reconnect_delay(failures) == delay


def test_install_sql_locks_then_replaces_function_and_every_trigger():
    sql = w.install_sql()
    assert sql[0] == "SET LOCAL lock_timeout = '2s'"  # never queue long behind a table lock
    assert sql[1].startswith("SELECT pg_advisory_xact_lock")
    assert "CREATE OR REPLACE FUNCTION airscale_wake_scheduler()" in sql[2]
    assert f"pg_notify('{w.CHANNEL}'" in sql[2]
    tables = [t.table for t in w.TRIGGERS]
    assert set(tables) == {"task_instance", "dag_run", "dag", "asset_dag_run_queue"}
    assert all(s.startswith("CREATE OR REPLACE TRIGGER ") for s in sql[3:-1])
    assert sql[-1] == f"COMMENT ON FUNCTION airscale_wake_scheduler() IS '{w.VERSION}'"
    assert w.installed_params() == (w.VERSION, [t.name for t in w.TRIGGERS], 5)


def test_installed_triggers_are_not_created_again():
    conn = FakeConn()
    conn.installed = True
    assert w.Listener(lambda: conn).ensure()
    assert conn.executed == [w.INSTALLED_SQL, f"LISTEN {w.CHANNEL}"]
    ti = next(t for t in w.TRIGGERS if t.table == "task_instance")
    # The scheduler's own transitions (scheduled, queued) and a task starting wake nobody.
    for state in ("success", "failed", "up_for_retry", "deferred"):
        assert f"'{state}'" in ti.when
    for state in ("'queued'", "'running'"):
        assert state not in ti.when


class FakeConn:
    """A psycopg2-like connection: notifications are delivered by `notify`, through a real
    pipe so that `select` sees them."""

    def __init__(self, fail_on: str | None = None):
        self.r, self.wfd = os.pipe()
        self.notifies: list = []
        self.executed: list[str] = []
        self.autocommit = True
        self.closed = False
        self.fail_on = fail_on
        self.next_run = None
        self.installed = None  # what the check for the triggers answers

    def fileno(self):
        return self.r

    def notify(self, payload="task_instance"):
        os.write(self.wfd, b"x")
        self._pending = payload

    def poll(self):
        if self.fail_on == "poll":
            raise OSError("server closed the connection")
        try:
            os.set_blocking(self.r, False)
            if os.read(self.r, 100):
                self.notifies.append(types.SimpleNamespace(payload=self._pending))
        except BlockingIOError:
            pass

    def cursor(self):
        conn = self

        class Cur:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

            def execute(self, stmt, params=None):
                if conn.fail_on == "execute":
                    raise OSError("could not connect")
                conn.executed.append(stmt)
                self.last = stmt

            def fetchone(self):
                if self.last == w.INSTALLED_SQL:
                    return (conn.installed,)
                return (conn.next_run,)

        return Cur()

    def commit(self):
        pass

    def close(self):
        self.closed = True


def test_listener_installs_listens_and_wakes_on_a_notification():
    conn = FakeConn()
    lis = w.Listener(lambda: conn)
    assert lis.ensure() and lis.listening
    assert conn.executed == [w.INSTALLED_SQL, *w.install_sql(), f"LISTEN {w.CHANNEL}"]
    assert lis.wait(0.05) is False  # nothing happened: the whole wait
    conn.notify()
    assert lis.wait(5.0) is True
    assert lis.wait(0.01) is False  # drained


def test_listener_backs_off_then_reconnects(monkeypatch):
    now = [100.0]
    conns = [FakeConn(fail_on="execute"), FakeConn()]
    lis = w.Listener(lambda: conns.pop(0), clock=lambda: now[0])
    assert lis.ensure() is False and lis.failures == 1
    assert lis.ensure() is False  # backing off: no second attempt yet
    now[0] += w.reconnect_delay(1)
    assert lis.ensure() is True and lis.failures == 0


def test_a_broken_connection_is_dropped_and_the_wait_ends():
    conn = FakeConn(fail_on="poll")
    lis = w.Listener(lambda: conn)
    assert lis.ensure()
    assert lis.wait(1.0) is False
    assert not lis.listening and conn.closed and lis.failures == 1


def test_a_forked_child_never_touches_the_parents_connection(monkeypatch):
    conn = FakeConn()
    lis = w.Listener(lambda: conn)
    assert lis.ensure()
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert lis.listening is False
    assert lis.ensure() is False
    assert not conn.closed and lis._orphans == [conn]


def test_next_run_in():
    conn = FakeConn()
    lis = w.Listener(lambda: conn)
    assert lis.next_run_in() is None  # not connected
    lis.ensure()
    assert lis.next_run_in() is None
    conn.next_run = 2.5
    assert lis.next_run_in() == 2.5


def _run_scheduler_loop(loop_time, seconds):
    # Named as Airflow's loop: only its sleep waits for events.
    loop_time.sleep(seconds)


def test_loop_time_waits_for_events_only_in_the_scheduler_loop(monkeypatch):
    conn = FakeConn()
    lt = w.LoopTime(w.Listener(lambda: conn), short_sleep=0.2)
    slept: list[float] = []
    monkeypatch.setattr(w._time, "sleep", lambda s: slept.append(round(s, 1)))
    conn.notify()
    _run_scheduler_loop(lt, 5.0)
    assert slept == []  # woken at once: no sleep after the wait
    lt.sleep(3.0)  # any other caller of time.sleep in Airflow's module: a plain sleep
    assert slept[-1] == 3.0
    assert lt.monotonic is w._time.monotonic  # the rest of `time` is the module itself


def test_loop_time_with_timers_due_neither_waits_nor_queries(monkeypatch):
    conn = FakeConn()
    lt = w.LoopTime(w.Listener(lambda: conn), short_sleep=0.2)
    slept: list[float] = []
    monkeypatch.setattr(w._time, "sleep", lambda s: slept.append(s))
    _run_scheduler_loop(lt, 0.0)
    assert slept == [] and w.NEXT_RUN_SQL not in conn.executed
    _run_scheduler_loop(lt, 0.05)  # a wait: the next cron run is read first
    assert w.NEXT_RUN_SQL in conn.executed


def test_loop_time_without_a_database_sleeps_the_short_sleep(monkeypatch):
    def refuse():
        raise OSError("connection refused")

    lt = w.LoopTime(w.Listener(refuse), short_sleep=0.2)
    slept: list[float] = []
    monkeypatch.setattr(w._time, "sleep", lambda s: slept.append(round(s, 2)))
    _run_scheduler_loop(lt, 5.0)
    assert slept == [0.2]


def test_install_swaps_the_loops_sleep(monkeypatch):
    from airflow.jobs import scheduler_job_runner
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    monkeypatch.setattr(scheduler_job_runner, "time", scheduler_job_runner.time)
    monkeypatch.setattr(SchedulerJobRunner, "__init__", lambda self, *a, **k: setattr(
        self, "_scheduler_idle_sleep_time", 0.2))
    w.install("postgresql+psycopg2://u:p@127.0.0.1:1/db", long_sleep=5.0)
    assert isinstance(scheduler_job_runner.time, w.LoopTime)
    runner = SchedulerJobRunner()
    assert runner._scheduler_idle_sleep_time == 5.0
    assert scheduler_job_runner.time.short_sleep == 0.2


def test_connect_options_reach_the_driver(monkeypatch):
    import psycopg2

    seen = {}
    monkeypatch.setattr(psycopg2, "connect", lambda *a, **k: seen.update(k))
    w.sqlalchemy_connect("postgresql+psycopg2://u:p%40w@127.0.0.1:5433/airflow")()
    assert seen["host"] == "127.0.0.1" and seen["port"] == 5433 and seen["password"] == "p@w"
    assert seen["dbname"] == "airflow" and seen["tcp_user_timeout"] == 10000


def test_drop_sql_removes_every_trigger_only_where_its_table_exists():
    sql = w.drop_sql()
    assert sql.startswith("DO $$ BEGIN ") and sql.endswith(" END $$")
    for t in w.TRIGGERS:
        assert (f"IF to_regclass('{t.table}') IS NOT NULL THEN EXECUTE 'DROP TRIGGER IF EXISTS {t.name} "
                f"ON {t.table}'; END IF;") in sql
