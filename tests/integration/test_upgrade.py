"""`airscale upgrade` against real processes (the shared `dev` cluster of conftest.py).

- a rehearsal at the installed version (`--force`; the migration is a no-op): every step runs,
  the Airflow components come back as new processes, the smoke run succeeds; without
  `--force` there is nothing to upgrade, and `--dry-run` changes nothing;
- a migration that fails midway for a real reason: another session holds Airflow's migration
  lock (what a second `airflow db migrate`, from another host, would hold), so the real
  `airflow db migrate` gives up after its lock timeout. The upgrade rolls back: the database
  comes back from the backup it took, the cluster runs again, DAG runs, task instances,
  connections and variables are identical, and the message names the step, the backup and
  the retry (exit code 1).

Both leave the cluster as they found it (the database the rollback set aside is dropped).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import pytest

from airscale.runtime import health
from airscale.runtime.airflow_config import api_url
from airscale.workload.client import AirflowClient
from tests.conftest import airscale

pytestmark = [pytest.mark.integration]

STEPS = ["check", "backup", "stop", "migrate", "restart", "smoke"]
AIRFLOW_KINDS = ("api-server", "scheduler", "dag-processor", "triggerer")
# airflow.utils.db.DBLocks.MIGRATIONS: the advisory lock `airflow db migrate` takes (with a
# lock_timeout of 1.8 s) before it changes anything.
MIGRATIONS_LOCK = 1


def _pids(cluster) -> dict[str, int]:
    return {r["component"]: r["pid"] for r in cluster.status() if r["state"] == "RUNNING"}


def _airflow_pids(cluster) -> dict[str, int]:
    kinds = {c.name: c.kind for c in cluster.components()}
    return {n: p for n, p in _pids(cluster).items() if kinds.get(n) in AIRFLOW_KINDS}


@pytest.mark.timeout(600)
def test_upgrade_rehearsal_at_the_same_version(healthy_dev, tmp_path):
    cluster, spec = healthy_dev.cluster, str(healthy_dev.spec_path)
    proc = airscale("upgrade", "-s", spec, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to upgrade" in proc.stdout, proc.stdout
    proc = airscale("upgrade", "-s", spec, "--force", "--dry-run", "--json", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads(proc.stdout)
    assert [s["name"] for s in plan["plan"]] == STEPS and plan["steps"] == []
    assert plan["from"]["airflow"] == plan["to"]["airflow"]

    before = _airflow_pids(cluster)
    out = tmp_path / "pre-upgrade.tar"
    proc = airscale("upgrade", "-s", spec, "--force", "--json", "--backup", str(out), timeout=540)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert [s["step"] for s in result["steps"]] == STEPS, result
    assert result["backup"] == str(out) and oct(out.stat().st_mode & 0o777) == "0o600"
    assert result["smoke_run"], result
    for step in STEPS:  # a progress line for each step
        assert f"] {step}: " in proc.stderr, proc.stderr
    # Every Airflow component was stopped for the migration and runs again as a new process.
    after = _airflow_pids(cluster)
    assert set(after) == set(before)
    assert all(after[n] != before[n] for n in before), (before, after)
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password, timeout=30)
    assert client.run_state("airscale_smoke", result["smoke_run"]) == "success"
    versions = (cluster.layout.versions_file).read_text()
    assert f"apache-airflow = {plan['to']['airflow']}" in versions


def _probe_rows(cluster, dag_id: str, run_id: str, conn_id: str, key: str) -> dict[str, list[tuple]]:
    return {
        "dag_run": cluster.query("SELECT * FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id),
        "task_instance": cluster.query("SELECT * FROM task_instance WHERE dag_id = %s AND run_id = %s "
                                       "ORDER BY task_id, map_index", dag_id, run_id),
        "connection": cluster.query("SELECT * FROM connection WHERE conn_id = %s", conn_id),
        "variable": cluster.query("SELECT * FROM variable WHERE key = %s", key),
        "dag_runs": cluster.query("SELECT count(*) FROM dag_run"),
    }


@pytest.mark.timeout(600)
def test_upgrade_whose_migration_fails_rolls_back(healthy_dev, tmp_path):
    cluster, spec = healthy_dev.cluster, str(healthy_dev.spec_path)
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password, timeout=30)
    client.wait_for_dag("dbcare_probe")
    client.unpause("dbcare_probe")
    run_id = client.trigger("dbcare_probe")
    assert client.wait_for_run("dbcare_probe", run_id, timeout=300).state == "success"
    tag = uuid.uuid4().hex[:8]
    conn_id, key = f"upgrade_probe_{tag}", f"upgrade_probe_{tag}"
    client._call("POST", "/connections", json={"connection_id": conn_id, "conn_type": "postgres",
                                               "host": "db.example", "login": "u", "password": "p:ss"})
    client._call("POST", "/variables", json={"key": key, "value": f"v-{tag}"})
    client.close()
    before = _probe_rows(cluster, "dbcare_probe", run_id, conn_id, key)
    assert before["dag_run"] and before["task_instance"] and before["connection"] and before["variable"]

    holder = health.db_connect(cluster.spec, cluster.secrets(), timeout=5)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATIONS_LOCK,))
    out = tmp_path / "pre-upgrade.tar"
    try:
        proc = airscale("upgrade", "-s", spec, "--force", "--json", "--backup", str(out), timeout=540)
    finally:
        # The rollback's swap ends every session of the old database, this one too.
        with contextlib.suppress(Exception):
            holder.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["failed_step"] == "migrate", result
    assert "airflow db migrate failed" in result["error"] and "lock timeout" in result["error"], result["error"]
    assert any("cluster running the previous version" in line for line in result["rollback"]), result["rollback"]
    restored = [line for line in result["rollback"] if line.startswith("restored the database from")]
    assert restored and str(out) in restored[0]
    # The message: the step, the cause, the backup, how to retry.
    assert "upgrade failed at step migrate" in proc.stderr
    assert str(out) in proc.stderr and "airscale upgrade -s" in proc.stderr and "again" in proc.stderr
    assert "Traceback" not in proc.stderr

    # The data is what it was, and the cluster runs: the fixture of the next test waits for
    # every component; here the api-server answers and the rows are identical.
    healthy_dev.wait_healthy()
    after = _probe_rows(cluster, "dbcare_probe", run_id, conn_id, key)
    for table in before:
        assert after[table] == before[table], table
    aside = [r[0] for r in cluster.query("SELECT datname FROM pg_database WHERE datname LIKE 'airflow_before_rollback_%%'")]
    assert len(aside) == 1, aside
    # Leave the cluster as found: the database the rollback set aside goes.
    import psycopg2.sql

    from airscale.runtime.postgres import superuser_connect

    conn = superuser_connect(cluster.spec, cluster.secrets())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(psycopg2.sql.SQL("DROP DATABASE {}").format(psycopg2.sql.Identifier(aside[0])))
    conn.close()
    assert Path(out).exists()
