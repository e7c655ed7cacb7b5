"""`airscale up` on a running cluster is an apply (airscale.runtime.apply), on the shared
default cluster while a workload of 100 tasks runs: after each edit of the spec, `up`
restarts or reloads exactly the components whose inputs changed (PIDs before and after), the
new values are in effect, and at the end every task of the workload succeeded on its first
try. The original spec is restored (and applied) at the end.

The workload's tasks take a pool of the spec (4 slots, later 12) so that it runs through every
`up`: 100 tasks of 10 s at 4 at a time last about as long as the applies (the pool grows to 12
with the last edit, and the test waits for every task). That test takes several minutes of
rolling restarts and is marked `long` (`make test-long`); `make test` runs the quick one, a
pool and an alert threshold applied without restarting any Airflow process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

from airscale.runtime import broker
from airscale.runtime.airflow_config import api_url
from airscale.workload.client import AirflowClient
from tests.conftest import airscale
from tests.integration.conftest import cluster_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

DAG_ID = "it_apply"
TASKS = 100
POOL = "it_apply"
DAG_SOURCE = f'''"""Workload of test_apply: {TASKS} tasks in pool {POOL}."""
import time

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_tasks=500)
def {DAG_ID}():
    @task(pool="{POOL}", retries=3)
    def work(i: int) -> int:
        time.sleep(10)
        return i

    work.expand(i=list(range({TASKS})))


{DAG_ID}()
'''
# The daemons that read the spec file itself: any edit of it restarts them.
SPEC_DAEMONS = {"liveness", "reclaimer"}
AIRFLOW = {"scheduler-1", "scheduler-2", "api-server-1", "api-server-2", "dag-processor", "triggerer", "worker-forkserver"}


def pids(spec_path: Path) -> dict[str, int]:
    rows = json.loads(airscale("status", "-s", str(spec_path), "--json", check=True).stdout)
    # STARTING too: `up` counts a component ready once its health check passes.
    return {r["component"]: r["pid"] for r in rows if r["state"] in ("RUNNING", "STARTING")}


def apply(spec_path: Path, data: dict, expect_restarted: set[str], expect_reloaded: set[str] = frozenset(),
          started: set[str] = frozenset()) -> dict[str, int]:
    """Write the spec, check the dry run's plan, run `up`, and check from the PIDs that exactly
    the expected components were restarted (and reloaded ones kept their PID)."""
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = pids(spec_path)
    plan = json.loads(airscale("up", "--dry-run", "--json", "-s", str(spec_path), check=True).stdout)
    planned = {c["component"]: c["action"] for c in plan["changes"]}
    assert planned == {**{n: "restart" for n in expect_restarted}, **{n: "reload" for n in expect_reloaded},
                       **{n: "start" for n in started}}, plan
    assert pids(spec_path) == before, "the dry run changed a process"
    proc = airscale("up", "-s", str(spec_path), timeout=1500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = pids(spec_path)
    changed = {n for n in before if n in after and after[n] != before[n]}
    assert changed == expect_restarted, proc.stdout
    assert set(after) - set(before) == set(started)
    for name in expect_restarted:
        assert f"restarted {name} because" in proc.stdout
    for name in expect_reloaded:
        assert f"reloaded {name} because" in proc.stdout
    return after


def pool_slots(cluster, name: str) -> int | None:
    rows = cluster.query("SELECT slots FROM slot_pool WHERE pool = %s", name)
    return rows[0][0] if rows else None


def worker_concurrency(cluster, node: str) -> int:
    app = broker.celery_app(cluster.spec, cluster.secrets())
    try:
        stats = app.control.inspect(timeout=5).stats() or {}
    finally:
        app.close()
    mine = [s for n, s in stats.items() if n.split("@", 1)[0] == node]
    assert mine, f"{node} did not answer: {sorted(stats)}"
    return mine[0]["pool"]["max-concurrency"]


def prometheus_rule(cluster, alert: str) -> str:
    body = httpx.get(f"http://{cluster.spec.client_host}:{cluster.spec.ports.prometheus}/api/v1/rules", timeout=5).json()
    for group in body["data"]["groups"]:
        for rule in group["rules"]:
            if rule.get("name") == alert:
                return rule["query"]
    raise AssertionError(f"no rule {alert}")


@pytest.mark.timeout(900)
def test_up_applies_a_pool_and_a_threshold_and_nothing_else(healthy_default):
    """The quick part, in `make test`: no Airflow process restarts for a pool or an alert
    threshold; Prometheus reloads its rules under the same PID; an unchanged spec changes
    nothing. (The rolling restarts under a workload: the `long` test below.)"""
    spec_path = healthy_default.spec_path
    original = spec_path.read_text()
    data = yaml.safe_load(original)
    cluster = healthy_default.cluster
    before = pids(spec_path)
    dry = airscale("up", "--dry-run", "-s", str(spec_path), check=True)
    assert "nothing would change" in dry.stdout
    assert pids(spec_path) == before
    try:
        data["pools"] = {POOL: 4}
        stale = data["monitoring"]["thresholds"]["scheduler_heartbeat_stale_seconds"]
        data["monitoring"]["thresholds"]["scheduler_heartbeat_stale_seconds"] = stale + 7
        apply(spec_path, data, SPEC_DAEMONS, expect_reloaded={"prometheus"})
        assert pool_slots(cluster, POOL) == 4
        assert f"< {stale + 7})" in prometheus_rule(cluster, "NoHealthyScheduler")
        data["pools"][POOL] = 9
        apply(spec_path, data, SPEC_DAEMONS)
        assert pool_slots(cluster, POOL) == 9
    finally:
        spec_path.write_text(original)
        proc = airscale("up", "-s", str(spec_path), timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing would change" in airscale("up", "--dry-run", "-s", str(spec_path), check=True).stdout
    assert pool_slots(cluster, POOL) is None


@pytest.mark.long
def test_up_applies_each_change_while_a_workload_runs(healthy_default):
    shared = healthy_default
    spec_path = shared.spec_path
    original = spec_path.read_text()
    data = yaml.safe_load(original)
    cluster = shared.cluster
    # Unchanged spec: nothing would change, and nothing does.
    before = pids(spec_path)
    dry = airscale("up", "--dry-run", "-s", str(spec_path), check=True)
    assert "nothing would change" in dry.stdout
    assert pids(spec_path) == before
    failed = True
    try:
        # 1. A pool of the spec: created in the database; only the spec's readers restart.
        data["pools"] = {POOL: 4}
        apply(spec_path, data, SPEC_DAEMONS)
        assert pool_slots(cluster, POOL) == 4

        (Path(data["dags_folder"]) / f"{DAG_ID}.py").write_text(DAG_SOURCE)
        client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
        client.wait_for_dag(DAG_ID, timeout=300)
        client.unpause(DAG_ID)
        run_id = client.trigger(DAG_ID)

        # 2. A monitoring threshold: Prometheus reloads its rules (same PID), nothing else of
        # the cluster restarts.
        stale = data["monitoring"]["thresholds"]["scheduler_heartbeat_stale_seconds"]
        data["monitoring"]["thresholds"]["scheduler_heartbeat_stale_seconds"] = stale + 7
        apply(spec_path, data, SPEC_DAEMONS, expect_reloaded={"prometheus"})
        assert f"< {stale + 7})" in prometheus_rule(cluster, "NoHealthyScheduler")

        # 3. An airflow_config scheduler setting: every Airflow process restarts, one at a
        # time; the database, broker and monitoring keep running.
        data.setdefault("airflow_config", {}).setdefault("scheduler", {})["max_tis_per_query"] = 48
        workers = {"worker-default-1", "worker-default-2"}
        apply(spec_path, data, AIRFLOW | workers | SPEC_DAEMONS)
        assert "max_tis_per_query = 48" in cluster.layout.airflow_cfg.read_text()

        # 4. A queue's concurrency: its workers run with it (what Celery reports). The plan
        # follows the queues' slots: parallelism (all Airflow processes) and PostgreSQL's
        # max_connections (a restart of PostgreSQL, last).
        data["queues"]["default"]["concurrency"] = 12
        apply(spec_path, data, AIRFLOW | workers | SPEC_DAEMONS | {"postgres"})
        assert worker_concurrency(cluster, "worker-default-1") == 12
        assert worker_concurrency(cluster, "worker-default-2") == 12

        # 5. A new queue: its worker starts and consumes it; the exporter watches it too.
        data["queues"]["apply"] = {"min_workers": 1, "max_workers": 1, "concurrency": 2}
        apply(spec_path, data, AIRFLOW | workers | SPEC_DAEMONS | {"postgres", "exporter"},
              started={"worker-apply-1"})
        assert worker_concurrency(cluster, "worker-apply-1") == 2

        # 6. A pool's size, while its tasks run.
        data["pools"][POOL] = 12
        apply(spec_path, data, SPEC_DAEMONS)
        assert pool_slots(cluster, POOL) == 12

        # The workload: every task succeeded, each on its first try.
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline:
            rows = cluster.query("SELECT state, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
                                 DAG_ID, run_id)
            if len(rows) == TASKS and all(s in ("success", "failed", "upstream_failed") for s, _ in rows):
                break
            time.sleep(5)
        assert sorted(set(rows)) == [("success", 1)], sorted(set(rows))
        assert len(rows) == TASKS
        failed = False
    finally:
        if failed:  # the evidence outlives the purged cluster
            import shutil
            import tempfile

            keep = Path(tempfile.mkdtemp(prefix="airscale-it-apply-logs-", dir="/tmp"))
            shutil.copytree(cluster.layout.logs, keep / "logs", ignore=shutil.ignore_patterns("tasks"))
            print(f"component logs kept in {keep}")
        # The cluster as this test found it: the original spec, applied; the pool removed.
        spec_path.write_text(original)
        proc = airscale("up", "-s", str(spec_path), timeout=1500)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing would change" in airscale("up", "--dry-run", "-s", str(spec_path), check=True).stdout
    assert pool_slots(cluster_of(spec_path), POOL) is None
