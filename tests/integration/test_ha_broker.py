"""The broker without a single point of failure, against real processes: `ha.broker` runs the
Redis primary `redis` with its replica `redis-2` (both AOF) and three Sentinels; Airflow, Celery
and airscale's own clients find the primary through the Sentinels.

Each fault is the real `airscale drill` CLI while its workload runs; the verdict must say PASS
with no DAG run or task lost or stuck, the next task done within 30 s of the fault, and
afterwards both nodes run, one primary and one replica replicating from it, the Sentinels agree,
and no component is FATAL or EXITED. Before ha.broker, the loss of Redis stopped queueing until
it was restarted, and a hung Redis until liveness killed it (~70 s).

It runs on the session's shared `ha` cluster (tests/integration/conftest.py), which has
ha.database on too.
"""

from __future__ import annotations

import json
import re

import pytest

from airscale.runtime import broker
from tests.conftest import airscale

pytestmark = pytest.mark.integration

NEXT_TASK_TARGET_S = 30.0


@pytest.fixture
def shared(healthy_ha):
    return healthy_ha


def status(spec_path) -> dict[str, dict]:
    proc = airscale("status", "--json", "-s", str(spec_path), check=True)
    return {r["component"]: r for r in json.loads(proc.stdout)}


def drill(spec_path, name: str, *args: str) -> str:
    proc = airscale("drill", name, "-s", str(spec_path), "--timeout", "240", *args, timeout=600)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"drill {name}: PASS" in proc.stdout
    assert "0 lost, 0 stuck" in proc.stdout and "0 committed success(es) lost" in proc.stdout
    m = re.search(r"next task done ([\d.]+)s after the fault", proc.stdout)
    assert m and float(m.group(1)) <= NEXT_TASK_TARGET_S, proc.stdout
    return proc.stdout


def assert_pair_and_nothing_dead(shared) -> None:
    shared.wait_healthy()
    cluster = shared.cluster
    roles = broker.roles(cluster.spec, cluster.secrets())
    assert sorted(map(str, roles.values())) == ["master", "slave"], roles
    rows = status(shared.spec_path)
    dead = {n: r["state"] for n, r in rows.items() if r["state"] in ("FATAL", "EXITED")}
    assert not dead, dead
    primary = broker.primary_node(cluster.spec, cluster.secrets())
    assert roles[primary] == "master", (primary, roles)
    replica = next(n for n in roles if n != primary)
    assert rows[replica]["health"].startswith(f"replica of {primary}, link up"), rows[replica]
    for i in broker.SENTINELS:
        assert rows[broker.sentinel_name(i)]["healthy"], rows[broker.sentinel_name(i)]


def test_status_shows_a_primary_a_replica_and_three_sentinels(shared):
    assert_pair_and_nothing_dead(shared)
    cfg = shared.cluster.layout.airflow_cfg.read_text()
    assert "broker_url = sentinel://" in cfg and "master_name = airscale" in cfg


def test_primary_killed_fails_over(shared):
    cluster = shared.cluster
    before = broker.primary_node(cluster.spec, cluster.secrets())
    out = drill(shared.spec_path, "redis-kill", "--runs", "6", "--seconds", "3")
    assert f"kill -9 the Redis primary {before}" in out
    assert_pair_and_nothing_dead(shared)
    # The killed node came back after the failover, as the new primary's replica.
    assert broker.primary_node(cluster.spec, cluster.secrets()) != before


@pytest.mark.drill
def test_primary_hung_fails_over(shared):
    cluster = shared.cluster
    before = broker.primary_node(cluster.spec, cluster.secrets())
    out = drill(shared.spec_path, "redis-hang", "--hang", "60", "--runs", "6", "--seconds", "5")
    assert f"SIGSTOP the Redis primary {before}" in out
    assert_pair_and_nothing_dead(shared)
    assert broker.primary_node(cluster.spec, cluster.secrets()) != before
