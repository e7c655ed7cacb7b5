"""The `dev` profile: LocalExecutor, no broker and no Celery workers (the shared `dev` cluster
of conftest.py)."""

from __future__ import annotations

import json

import pytest

from airscale.runtime.airflow_config import api_url
from airscale.workload.client import AirflowClient
from tests.conftest import airscale

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_dev_profile_runs_tasks_with_the_local_executor(healthy_dev):
    from airscale.backup.schedule import BACKUP
    from airscale.dbcare.schedule import DB_CLEANER
    from airscale.runtime.components import LIVENESS

    path, cluster = healthy_dev.spec_path, healthy_dev.cluster
    rows = {r["component"]: r for r in json.loads(airscale("status", "--json", "-s", str(path), check=True).stdout)}
    # No broker, no worker; the db cleaner and the backup component because this cluster's
    # spec schedules `db clean` and backups.
    assert cluster.spec.tuning.db_clean_every_hours and cluster.spec.backup.every_hours
    daemons = {DB_CLEANER, BACKUP, LIVENESS}
    assert set(rows) == {"postgres", "api-server", "scheduler-1", "dag-processor", "triggerer", *daemons}
    # The db cleaner, the backup component and liveness have no health check of their own (healthy: None): running
    # is what they show.
    assert all(r["healthy"] for n, r in rows.items() if n not in daemons), rows
    assert all(rows[n]["state"] == "RUNNING" for n in daemons), rows
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("it_layers")
    client.unpause("it_layers")
    result = client.wait_for_run("it_layers", client.trigger("it_layers"), timeout=300)
    assert result.state == "success"
    assert {ti["state"] for ti in result.tasks} == {"success"}
    # LocalExecutor: tasks run under the scheduler, which records its own hostname.
    assert {ti["hostname"].split(".")[0] for ti in result.tasks} == {"scheduler-1"}
