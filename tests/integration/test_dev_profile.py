"""The `dev` profile: LocalExecutor, no broker and no Celery workers."""

from __future__ import annotations

import json
import subprocess

import pytest

from airscale.runtime.airflow_config import api_url
from airscale.runtime.cluster import Cluster
from airscale.spec import load_spec
from airscale.workload.client import AirflowClient
from tests.conftest import REPO, airscale, reachable_tmpdir, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_dev_profile_runs_tasks_with_the_local_executor():
    d = reachable_tmpdir("airscale-dev-")
    path = write_spec(d, {
        "cluster": {"name": "dev", "data_dir": str(d / "data"), "base_port": 29200, "profile": "dev"},
        "schedulers": {"count": 1},
        "dags_folder": str(REPO / "tests" / "integration" / "dags"),
    })
    try:
        proc = airscale("up", "-s", str(path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = {r["component"]: r for r in json.loads(airscale("status", "--json", "-s", str(path), check=True).stdout)}
        assert set(rows) == {"postgres", "api-server", "scheduler-1", "dag-processor", "triggerer"}
        assert all(r["healthy"] for r in rows.values()), rows
        cluster = Cluster(load_spec(path))
        client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
        client.wait_for_dag("it_layers")
        client.unpause("it_layers")
        result = client.wait_for_run("it_layers", client.trigger("it_layers"), timeout=300)
        assert result.state == "success"
        assert {ti["state"] for ti in result.tasks} == {"success"}
        # LocalExecutor: tasks run under the scheduler, which records its own hostname.
        assert {ti["hostname"].split(".")[0] for ti in result.tasks} == {"scheduler-1"}
    finally:
        airscale("down", "--purge", "-s", str(path))
        subprocess.run(["rm", "-rf", str(d)], check=False)
