"""Failure drills against a real cluster: two schedulers, two Celery workers, Redis, PostgreSQL.

Each test runs `airscale drill NAME` (the real CLI, as a user would) while the drill workload
(6 DAG runs x 12 tasks) runs, then checks the verdict against the database itself: every
DAG run succeeded, nothing is left queued or running, and for the worker kill, the interrupted
tasks were retried and succeeded. The cluster starts with the drill DAG already in its folder,
so no test waits for the DAG processor to notice a new file.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import redis

from airscale.drills import workload
from airscale.runtime.airflow_config import broker_url
from tests.conftest import airscale
from tests.integration.conftest import log_mark, log_since

pytestmark = [pytest.mark.integration]


@pytest.fixture
def spec_path(healthy_default):
    return healthy_default.spec_path


@pytest.fixture
def cluster(healthy_default):
    return healthy_default.cluster


def drill(spec_path, name: str, shared) -> str:
    """Run a drill; afterwards, the cluster is healthy again (as the next test must find it)."""
    proc = airscale("drill", name, "-s", str(spec_path), "--runs", "6", "--timeout", "200", timeout=420)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"drill {name}: PASS" in proc.stdout
    shared.wait_healthy()
    return proc.stdout


def recent_runs(cluster) -> list[str]:
    """The run ids of the last drill (6 runs), newest first."""
    rows = cluster.query("SELECT run_id FROM dag_run WHERE dag_id = %s ORDER BY id DESC LIMIT 6", workload.DAG_ID)
    return [r for (r,) in rows]


def assert_all_done(cluster, runs: list[str]) -> None:
    states = cluster.query("SELECT state, count(*) FROM dag_run WHERE dag_id = %s AND run_id = ANY(%s) GROUP BY 1",
                   workload.DAG_ID, runs)
    assert dict(states) == {"success": 6}, states
    tis = cluster.query("SELECT state, count(*) FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) GROUP BY 1",
                workload.DAG_ID, runs)
    assert dict(tis) == {"success": 6 * workload.TASKS_PER_RUN}, tis
    # Nothing of any DAG stays queued or running once the drill is over (the tests sharing the
    # cluster run one at a time and wait for their own runs).
    busy = cluster.query("SELECT count(*) FROM task_instance WHERE state IN ('queued', 'running', 'scheduled')")
    assert busy == [(0,)], busy


@pytest.mark.timeout(420)
def test_scheduler_kill_loses_nothing(spec_path, cluster, healthy_default):
    out = drill(spec_path, "scheduler-kill", healthy_default)
    assert re.search(r"restarts:\s+scheduler-\d \+1", out), out
    assert_all_done(cluster, recent_runs(cluster))
    # The killed scheduler's job row does not stay "running": a live scheduler marks it failed
    # within ha.scheduler_health_threshold + ha.orphan_check_interval (30 + 30 s).
    deadline = time.monotonic() + 90
    while True:
        running = cluster.query("SELECT count(*) FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'")
        if running == [(2,)] or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert running == [(2,)], running


@pytest.mark.timeout(360)
def test_worker_kill_tasks_are_retried_and_succeed(spec_path, cluster, healthy_default):
    mark = log_mark(cluster, "reclaimer")
    out = drill(spec_path, "worker-kill", healthy_default)
    assert re.search(r"restarts:\s+worker-default-\d \+1", out), out
    runs = recent_runs(cluster)
    assert_all_done(cluster, runs)
    # The worker died with tasks running: those tries failed and a retry succeeded.
    retried = cluster.query("SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) "
                    "AND try_number > 1", workload.DAG_ID, runs)
    assert retried[0][0] >= 1, retried
    earlier = cluster.query("SELECT DISTINCT state FROM task_instance_history WHERE dag_id = %s "
                    "AND run_id = ANY(%s)", workload.DAG_ID, runs)
    assert {s for (s,) in earlier} <= {"failed", "up_for_retry"}, earlier
    # No message of the dead worker is left unacknowledged in Redis for the visibility timeout:
    # the reclaimer gave them back.
    # It decides every 5 s, once every running worker answers; give it a few rounds.
    r = redis.Redis.from_url(broker_url(cluster.spec, cluster.secrets()))
    deadline = time.monotonic() + 60
    while r.hlen("unacked") and time.monotonic() < deadline:
        time.sleep(2)
    log = log_since(cluster, "reclaimer", mark)
    assert r.hlen("unacked") == 0, (r.hgetall("unacked"), log)
    assert "back to their queue" in log
    # The tasks that died with the worker were retried without waiting for the 90 s heartbeat
    # timeout: the reclaimer saw the worker restart and expired their heartbeats.
    assert "marked their heartbeat as long past" in log
    done = re.search(r"interrupted tasks done (\d+\.\d)s", out)
    assert done and float(done.group(1)) < 60, out


@pytest.mark.timeout(300)
def test_broker_restart_loses_nothing(spec_path, cluster, healthy_default):
    # As a script would run it: --json on stdout, progress on stderr.
    proc = airscale("drill", "broker-restart", "-s", str(spec_path), "--runs", "6", "--timeout", "200", "--json",
                    timeout=420)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["passed"] is True, result
    (v,) = result["verdicts"]
    assert (v["scenario"], v["runs_total"], v["runs_succeeded"], v["runs_lost"], v["tasks_lost"]) == \
        ("broker-restart", 6, 6, 0, 0), v
    assert v["fault_detail"].startswith("stop redis through the supervisor"), v
    healthy_default.wait_healthy()
    assert_all_done(cluster, recent_runs(cluster))


def no_component_down(cluster) -> None:
    """Nothing left EXITED or FATAL: every ended component was started again."""
    rows = {r["component"]: r["state"] for r in cluster.status()}
    assert not {n: s for n, s in rows.items() if s in ("EXITED", "FATAL", "BACKOFF")}, rows


@pytest.mark.drill
@pytest.mark.timeout(600)
def test_database_outage_heals_with_nobody_acting(spec_path, cluster, healthy_default):
    """The database away for 90 s: schedulers, dag-processor and triggerer crash on it and wait;
    within 60 s of its return every component is healthy again and every run succeeds."""
    proc = airscale("drill", "database-outage", "-s", str(spec_path), "--outage", "90", "--runs", "6",
                    "--timeout", "300", timeout=560)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "drill database-outage: PASS" in proc.stdout
    back = float(re.search(r"postgres healthy again after ([\d.]+)s", proc.stderr).group(1))
    assert back <= 90 + 60, proc.stderr
    assert_all_done(cluster, recent_runs(cluster))
    no_component_down(cluster)
    # What waited for the database said so, and was started without a crash series.
    log = cluster.layout.log_of("restart-listener").read_text()
    assert "database does not answer" in log and "database answers again" in log
    healthy_default.wait_healthy()


@pytest.mark.drill
@pytest.mark.timeout(600)
def test_hung_scheduler_is_restarted_while_the_other_schedules(spec_path, cluster, healthy_default):
    """SIGSTOP one scheduler for 120 s: the other keeps the runs going, liveness kills the hung
    one after ha.liveness_timeout, the restart listener brings it back; no task runs twice."""
    mark = log_mark(cluster, "liveness")
    proc = airscale("drill", "scheduler-kill", "--hang", "120", "-s", str(spec_path), "--runs", "6",
                    "--timeout", "300", timeout=560)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "drill scheduler-hang: PASS" in proc.stdout
    hung = re.search(r"SIGSTOP one scheduler, (scheduler-\d)", proc.stdout).group(1)
    assert re.search(rf"restarts:\s+{hung} \+1", proc.stdout), proc.stdout
    assert "hit by the fault:    0 task(s)" in proc.stdout, proc.stdout
    # The next task finished while the scheduler was still stopped: the other one scheduled it.
    assert float(re.search(r"next task done ([\d.]+)s", proc.stdout).group(1)) < 120, proc.stdout
    assert f"{hung}: no sign of life" in log_since(cluster, "liveness", mark)
    assert_all_done(cluster, recent_runs(cluster))
    no_component_down(cluster)
    healthy_default.wait_healthy()
