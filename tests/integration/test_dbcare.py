"""`airscale db advise|clean` and the tuning plan, against a real cluster: the shared `dev`
cluster of conftest.py (profile dev: PostgreSQL, api-server, scheduler with LocalExecutor)
with tuning enabled: the plan's PostgreSQL settings must be live in the server, its Airflow
settings in airflow.cfg; the scheduled clean (every 36 s here) must have run from its
component; advise must find a hot index we drop and --fix must bring it back; clean must
delete old runs and vacuum.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]


@pytest.fixture
def cluster(healthy_dev):
    return healthy_dev.cluster


def _sql(cluster, query: str, autocommit: bool = False):
    from airscale.runtime.health import db_connect

    conn = db_connect(cluster.spec, cluster.secrets())
    conn.autocommit = autocommit
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            rows = cur.fetchall() if cur.description else None
        if not autocommit:
            conn.commit()
        return rows
    finally:
        conn.close()


@pytest.mark.timeout(300)
def test_plan_is_live(cluster):
    from airscale.tuning.apply import plan_for

    plan = plan_for(cluster.spec)
    assert _sql(cluster, "SHOW shared_buffers")[0][0] == "512MB"
    assert plan.get("postgresql", "shared_buffers").value == "512MB"
    assert _sql(cluster, "SHOW autovacuum_vacuum_scale_factor")[0][0] == "0.05"
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(cluster.layout.airflow_cfg)
    assert cfg.get("scheduler", "scheduler_idle_sleep_time") == "0.2"
    assert cfg.getboolean("airscale", "supervisor_exit_wakeup")
    assert not cfg.has_option("workers", "min_heartbeat_interval")  # stock 5 s: the exit wakeup frees slots


@pytest.mark.timeout(200)
def test_scheduled_clean_runs_from_its_component(cluster):
    from airscale.dbcare.schedule import DB_CLEANER, load_state, state_file

    assert cluster.supervisor.infos()[DB_CLEANER]["statename"] == "RUNNING"
    deadline = time.monotonic() + 150
    while not (state := load_state(state_file(cluster.spec))).last_start and time.monotonic() < deadline:
        time.sleep(2)
    assert state.last_start is not None, "no scheduled clean within 150 s"
    assert state.last_ok, state.detail
    assert "cut-off" in state.detail and "VACUUM ANALYZE" in state.detail
    log = cluster.layout.log_of(DB_CLEANER).read_text()
    assert "clean starts (first clean of this cluster)" in log and "clean done" in log
    # Its VACUUM ran: nothing else vacuums by hand before the tests below.
    assert _sql(cluster, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'task_instance'")[0][0]


@pytest.mark.timeout(300)
def test_advise_finds_and_fixes_missing_index(cluster):
    from airscale.dbcare.cli import apply_fixes, run_advice

    advice, tables = run_advice(cluster)
    assert {a.kind for a in advice if a.table in ("task_instance", "task_reschedule", "dag_run")} == {"ok"}
    assert any(t.table == "task_instance" for t in tables)
    _sql(cluster, "DROP INDEX ti_dag_version_id", autocommit=True)
    advice, _ = run_advice(cluster)
    missing = [a for a in advice if a.kind == "missing-index"]
    assert [a.table for a in missing] == ["task_instance"]
    assert apply_fixes(cluster, advice)
    advice, _ = run_advice(cluster)
    assert not [a for a in advice if a.kind == "missing-index"]
    assert _sql(cluster, "SELECT 1 FROM pg_indexes WHERE indexname = 'ti_dag_version_id'")


@pytest.mark.timeout(400)
def test_clean_deletes_old_runs_and_vacuums(cluster):
    from airscale.dbcare.clean import clean
    from airscale.runtime.airflow_config import api_url
    from airscale.workload.client import AirflowClient

    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("dbcare_probe")
    client.wait_for_dag("it_layers")
    client.unpause("dbcare_probe")
    for _ in range(2):
        run = client.trigger("dbcare_probe")
        assert client.wait_for_run("dbcare_probe", run, 180).state == "success"
    assert _sql(cluster, "SELECT count(*) FROM dag_run WHERE dag_id = 'dbcare_probe'")[0][0] == 2
    # The spec's 30 days keep everything that just ran.
    kept = clean(cluster, cluster.spec.tuning.db_retention_days)
    assert kept.rows_after == kept.rows_before
    # Retention 0: everything older than now goes (airflow db clean keeps the latest
    # *scheduled* run of a DAG; these runs were triggered by hand, so none is kept).
    r = clean(cluster, 0)
    assert r.rows_after < r.rows_before
    assert _sql(cluster, "SELECT count(*) FROM dag_run WHERE dag_id = 'dbcare_probe'")[0][0] == 0
    assert _sql(cluster, "SELECT count(*) FROM task_instance WHERE dag_id = 'dbcare_probe'")[0][0] == 0
    # The DAG catalog stays: its rows age by the last parse, which the plan makes hours apart,
    # and the DAGs the other tests of this cluster wait for must not vanish until then.
    assert _sql(cluster, "SELECT count(*) FROM dag WHERE dag_id IN ('dbcare_probe', 'it_layers')")[0][0] == 2
    assert _sql(cluster, "SELECT count(*) FROM serialized_dag WHERE dag_id = 'dbcare_probe'")[0][0] >= 1
    last = _sql(cluster, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'task_instance'")[0][0]
    assert last is not None


@pytest.mark.timeout(120)
def test_cli_advise(cluster):
    out = subprocess.run(
        [str(Path(sys.executable).parent / "airscale"), "db", "advise", "-s", str(cluster.spec.spec_file)],
        capture_output=True, text=True, timeout=100, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    assert "task_instance" in out.stdout and "largest tables" in out.stdout
