"""The `ha.database` profile against real processes: etcd, two Patroni-managed PostgreSQL nodes
and HAProxy in front, with Airflow (two schedulers, one Celery worker) on top.

The cluster is `ha_cluster` of conftest.py (ports 29600-29699). The checks: status, the
split-brain case (Patroni of the primary killed alone), a real failover (the primary node
frozen, then killed); each drill leaves both nodes streaming and the cluster healthy. Each drill
is the real `airscale drill` CLI; the checks read the database through HAProxy afterwards.
"""

from __future__ import annotations

import json
import re
import threading
import time

import psycopg2
import pytest

from airscale.drills import workload
from airscale.ha import database
from airscale.runtime.airflow_config import database_url
from tests.conftest import airscale

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(database.missing_binaries()),
                       reason="needs the Debian packages etcd-server, patroni and haproxy"),
]


@pytest.fixture
def spec_path(healthy_ha):
    return healthy_ha.spec_path


@pytest.fixture
def cluster(healthy_ha):
    return healthy_ha.cluster


def wait_for_streaming_standby(spec, timeout: float = 90) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        members = {m["name"]: m for m in database.cluster_members(spec)}
        roles = sorted(m.get("role") for m in members.values())
        if roles == ["leader", "replica"] and all(m.get("state") in ("running", "streaming")
                                                  for m in members.values()):
            return members
        assert time.monotonic() < deadline, members
        time.sleep(2)


def status(spec_path) -> dict[str, dict]:
    proc = airscale("status", "--json", "-s", str(spec_path), check=True)
    return {r["component"]: r for r in json.loads(proc.stdout)}


@pytest.mark.timeout(180)
def test_status_shows_primary_and_replication_lag(spec_path, cluster):
    wait_for_streaming_standby(cluster.spec)
    rows = status(spec_path)
    details = {n: rows[n]["health"] for n in ("pg-1", "pg-2")}
    assert sorted("PRIMARY" in d for d in details.values()) == [False, True], details
    standby = next(d for d in details.values() if "PRIMARY" not in d)
    assert "replication lag" in standby and " B" in standby, standby
    assert all(rows[f"etcd-{i}"]["healthy"] for i in (1, 2, 3)), rows
    assert rows["postgres"]["healthy"]
    # Airflow's connections are pooled by PgBouncer (on by default with ha.database), which
    # reaches the primary through HAProxy.
    assert rows["pgbouncer"]["healthy"] and "pooling" in rows["pgbouncer"]["health"], rows["pgbouncer"]
    assert f":{cluster.spec.ports.pgbouncer}/" in database_url(cluster.spec, cluster.secrets())
    # Airflow reaches the primary through HAProxy, and the standby really streams from it.
    primary = database.primary(cluster.spec)
    assert database.writable_node(cluster.spec, cluster.secrets()) == primary
    assert cluster.query("SELECT inet_server_port()")[0][0] == cluster.spec.ports.pg_node(int(primary[-1]))
    from airscale.runtime.postgres import superuser_connect

    conn = superuser_connect(cluster.spec, cluster.secrets())
    with conn.cursor() as cur:
        cur.execute("SELECT application_name, state FROM pg_stat_replication")
        assert cur.fetchall() == [("pg-2" if primary == "pg-1" else "pg-1", "streaming")]
    conn.close()


def drill(spec_path, name: str, shared) -> str:
    """Run a drill; afterwards, the cluster is healthy again (as the next test must find it)."""
    proc = airscale("drill", name, "-s", str(spec_path), "--runs", "6", "--timeout", "240", timeout=480)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"drill {name}: PASS" in proc.stdout
    assert "0 committed success(es) lost" in proc.stdout
    shared.wait_healthy()
    return proc.stdout


def assert_last_runs_succeeded(cluster) -> None:
    runs = [r for (r,) in cluster.query("SELECT run_id FROM dag_run WHERE dag_id = %s ORDER BY id DESC LIMIT 6",
                                 workload.DAG_ID)]
    tis = dict(cluster.query("SELECT state, count(*) FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) "
                     "GROUP BY 1", workload.DAG_ID, runs))
    assert tis == {"success": 6 * workload.TASKS_PER_RUN}, tis
    busy = cluster.query("SELECT count(*) FROM task_instance WHERE state IN ('queued', 'running', 'scheduled')")
    assert busy == [(0,)], busy


@pytest.mark.timeout(420)
def test_patroni_kill_keeps_one_writable_primary(spec_path, cluster, healthy_ha):
    before = database.primary(cluster.spec)
    drill(spec_path, "patroni-kill", healthy_ha)
    assert_last_runs_succeeded(cluster)
    members = wait_for_streaming_standby(cluster.spec)
    assert sum(m["role"] == "leader" for m in members.values()) == 1
    # Only one node accepts writes: the other is in recovery (no split brain).
    ports = cluster.spec.ports
    writable = []
    for i in database.NODES:
        conn = psycopg2.connect(host="127.0.0.1", port=ports.pg_node(i), user="postgres",
                                password=cluster.secrets().postgres_superuser_password, dbname="postgres",
                                connect_timeout=3)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            if not cur.fetchone()[0]:
                writable.append(database.node_name(i))
        conn.close()
    assert writable == [database.primary(cluster.spec)], (before, writable)


class ReadsThroughTheEndpoint:
    """Every 0.5 s, a new connection through HAProxy asks whether it reached a standby."""

    def __init__(self, cluster):
        self.cluster, self.answers, self._stop = cluster, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ports, secrets = self.cluster.spec.ports, self.cluster.secrets()
        while not self._stop.wait(0.5):
            at = time.time()
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=ports.postgres, user="postgres", dbname="postgres",
                                        password=secrets.postgres_superuser_password, connect_timeout=2,
                                        options="-c statement_timeout=2000")
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    self.answers.append((at, "standby" if cur.fetchone()[0] else "primary"))
                conn.close()
            except psycopg2.Error:
                self.answers.append((at, "none"))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def longest_outage(probes, ok) -> float:
    """Seconds from the first probe of the longest run of failed probes to the next good one."""
    longest, since = 0.0, None
    for p in sorted(probes, key=lambda p: p.at):
        if not ok(p):
            since = p.at if since is None else since
        elif since is not None:
            longest, since = max(longest, p.at - since), None
    return longest


@pytest.mark.timeout(480)
def test_db_failover_keeps_scheduling_and_loses_nothing(spec_path, cluster, healthy_ha):
    from airscale.runtime.airflow_config import api_url
    from airscale.soak.probe import REST, Prober

    old = database.primary(cluster.spec)
    prober = Prober(api_url(cluster.spec), "admin", cluster.secrets().admin_password, interval=0.5).start()
    with ReadsThroughTheEndpoint(cluster) as reads:
        out = drill(spec_path, "db-failover", healthy_ha)
    probes = [p for p in prober.stop() if p.endpoint == REST]
    # While no node was primary (the frozen one held its leader key for ha.database.ttl), the
    # endpoint sent connections to the standby, and the REST API kept answering reads: its
    # longest outage is the time HAProxy takes to mark the frozen node down, not the ttl.
    assert "standby" in {a for _, a in reads.answers}, reads.answers
    assert reads.answers[-1][1] == "primary", reads.answers[-5:]
    outage = longest_outage(probes, lambda p: p.ok and p.latency_s <= 2.0)
    print(f"REST: {sum(p.ok for p in probes)}/{len(probes)} probes answered, longest outage {outage:.1f} s")
    assert outage < cluster.spec.ha.database.ttl / 2, outage
    assert_last_runs_succeeded(cluster)
    new = database.primary(cluster.spec)
    assert new and new != old, (old, new)
    # PgBouncer rode out the failover (not restarted) and now reaches the new primary.
    assert cluster.query("SELECT inet_server_port()")[0][0] == cluster.spec.ports.pg_node(int(new[-1]))
    assert "pgbouncer +" not in out, out
    # The old primary came back as a streaming standby of the new one.
    members = wait_for_streaming_standby(cluster.spec, timeout=180)
    assert members[old]["role"] == "replica", members
    assert re.search(r"component healthy (\d+\.\d)s", out), out
    # Each scheduler's LISTEN connection (airscale.runtime.scheduler_wakeup), which bypasses
    # PgBouncer through HAProxy, broke with the old primary and found the new one.
    deadline, listening = time.monotonic() + 90, 0
    while time.monotonic() < deadline:
        listening = cluster.query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'airscale-wakeup'")[0][0]
        if listening == 2:
            break
        time.sleep(2)
    assert listening == 2, "the schedulers did not LISTEN on the new primary within 90 s"
    assert "scheduler_listen_url" in cluster.layout.airflow_cfg.read_text()
