"""The worker pods' preStop hook against a real Celery worker and a real Redis broker.

Redis listens on a unix socket only (no TCP port), and the worker is a plain Celery worker
with a sleeping task: what the hook relies on (`cancel_consumer`, `inspect().active()`) is
Celery's remote control, the same in Airflow's Celery app. Checks: the hook returns only after
the running tasks finished, a task sent after the hook started is not picked up by the
draining worker, and the wait is bounded by its timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from celery import Celery

from airscale.deploy.drain_hook import active_count, drain

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TASKS = '''
import os, time
from celery import Celery

app = Celery("drainapp", broker=os.environ["DRAIN_TEST_BROKER"])
app.conf.worker_prefetch_multiplier = 1
app.conf.task_acks_late = True

@app.task(name="nap")
def nap(seconds, marker):
    open(marker + ".start", "w").close()
    time.sleep(seconds)
    open(marker + ".end", "w").close()
'''


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def broker_and_worker():
    d = Path(tempfile.mkdtemp(prefix="airscale-drain-", dir="/tmp"))
    sock = d / "redis.sock"
    redis = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(d)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    broker = f"redis+socket://{sock}"
    (d / "drainapp.py").write_text(TASKS)
    env = {**os.environ, "DRAIN_TEST_BROKER": broker, "PYTHONPATH": str(d)}
    _wait(sock.exists, 10, "redis socket")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "drainapp", "worker", "-Q", "q1", "-c", "2",
         "-n", "worker@drain-test", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=d, env=env, stdout=open(d / "worker.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    app = Celery("drainapp", broker=broker)
    try:
        _wait(lambda: active_count(app, "worker@drain-test", 1.0) == 0, 60, "the worker to answer")
        yield app, d
    finally:
        for p in (worker, redis):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM) if p is worker else p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL) if p is worker else p.kill()
                    p.wait(5)
        app.close()
        subprocess.run(["rm", "-rf", str(d)], check=False)


def test_drain_waits_for_running_tasks_and_takes_no_new_one(broker_and_worker) -> None:
    app, d = broker_and_worker
    node = "worker@drain-test"
    for i in (1, 2):
        app.send_task("nap", args=[6, str(d / f"t{i}")], queue="q1")
    _wait(lambda: (d / "t1.start").exists() and (d / "t2.start").exists(), 30, "both tasks to start")

    t0 = time.monotonic()
    drained = drain(app, node, timeout=60, poll=0.5)
    took = time.monotonic() - t0

    assert drained is True
    assert (d / "t1.end").exists() and (d / "t2.end").exists(), "drain returned before the tasks ended"
    assert took >= 3, f"drain returned after {took:.1f}s although tasks were sleeping 6s"
    # The worker left the queue: a new task is not taken by it.
    app.send_task("nap", args=[1, str(d / "t3")], queue="q1")
    time.sleep(4)
    assert not (d / "t3.start").exists(), "a draining worker picked up a new task"


def test_drain_is_bounded_by_its_timeout(broker_and_worker) -> None:
    app, d = broker_and_worker
    app.send_task("nap", args=[20, str(d / "long")], queue="q1")
    _wait(lambda: (d / "long.start").exists(), 30, "the task to start")
    t0 = time.monotonic()
    assert drain(app, "worker@drain-test", timeout=2, poll=0.5) is False
    assert time.monotonic() - t0 < 12
    assert not (d / "long.end").exists()
