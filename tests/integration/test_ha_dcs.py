"""The `ha.database` DCS without a single point of failure, against real processes: three etcd
members, two Patroni-managed PostgreSQL nodes, HAProxy and PgBouncer, Airflow on top.

Each fault is the real `airscale drill` CLI (its verdict: no DAG run or task lost, stuck or
failed, no committed success lost) while a writer thread here INSERTs a row every 0.5 s through
the cluster's database URL (PgBouncer, HAProxy, the primary: Airflow's own path) and counts the
writes that fail. Before three members and failsafe mode, a single hung etcd demoted the primary
within 10 s and every write failed until etcd came back.

It runs on the session's shared `ha` cluster (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa

from airscale.ha import database
from airscale.runtime.airflow_config import database_url
from tests.conftest import airscale

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(database.missing_binaries()),
                       reason="needs the Debian packages etcd-server, patroni and haproxy"),
]

PROBE_TABLE = "airscale_dcs_probe"


@pytest.fixture
def spec_path(healthy_ha):
    return healthy_ha.spec_path


@pytest.fixture
def cluster(healthy_ha):
    return healthy_ha.cluster


@dataclass
class Writer:
    """Small INSERTs every `every` seconds on a pooled connection with pre-ping, as Airflow's
    SQLAlchemy engine does; what failed, and the slowest write."""

    url: str
    every: float = 0.5
    ok: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    slowest: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=1,
                                       connect_args={"connect_timeout": 10})
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} "
                                 "(id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text(f"INSERT INTO {PROBE_TABLE} DEFAULT VALUES"))
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - every failed write counts
                self.failures.append((time.time(), str(e).strip().splitlines()[0]))
            took = time.monotonic() - t0
            self.slowest = max(self.slowest, took)
            self._stop.wait(max(0.0, self.every - took))

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(timeout=60)
        self.engine.dispose()
        print(f"writer: {self.ok} ok, {len(self.failures)} failed, slowest {self.slowest:.1f}s; "
              f"failures: {self.failures[:5]}")


def drill_with_writer(spec_path, cluster, name: str, *args: str) -> tuple[str, Writer]:
    before = database.primary(cluster.spec)
    with Writer(database_url(cluster.spec, cluster.secrets())) as writer:
        proc = airscale("drill", name, "-s", str(spec_path), "--timeout", "240", *args, timeout=480)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"drill {name}: PASS" in proc.stdout
    assert "0 lost, 0 stuck" in proc.stdout and "0 committed success(es) lost" in proc.stdout
    assert writer.failures == [], writer.failures
    assert writer.ok > 0
    # No failover either: the primary never let go.
    assert database.primary(cluster.spec) == before
    return proc.stdout, writer


def status(spec_path) -> dict[str, dict]:
    proc = airscale("status", "--json", "-s", str(spec_path), check=True)
    return {r["component"]: r for r in json.loads(proc.stdout)}


@pytest.mark.timeout(120)
def test_status_shows_three_members_and_failsafe_is_on(spec_path, cluster):
    rows = status(spec_path)
    members = {n: rows[n] for n in ("etcd-1", "etcd-2", "etcd-3")}
    assert all(r["healthy"] for r in members.values()), members
    assert sum("raft leader" in r["health"] for r in members.values()) == 1, members
    assert "etcd" not in rows
    ports = cluster.spec.ports
    config = httpx.get(f"http://127.0.0.1:{ports.patroni_api(1)}/config", timeout=5).json()
    assert config["failsafe_mode"] is True, config


@pytest.mark.drill
@pytest.mark.timeout(420)
def test_one_etcd_member_hung_loses_no_write(spec_path, cluster):
    # 60 s frozen; 4 runs of 12 tasks of 8 s on 8 slots keep work in flight through it.
    out, _ = drill_with_writer(spec_path, cluster, "etcd-hang", "--hang", "60", "--runs", "4", "--seconds", "8")
    assert "SIGSTOP" in out


@pytest.mark.timeout(360)
def test_one_etcd_member_killed_loses_no_write(spec_path, cluster):
    out, _ = drill_with_writer(spec_path, cluster, "etcd-kill", "--runs", "4", "--seconds", "5")
    assert "restarts:            etcd-" in out, out


@pytest.mark.drill
@pytest.mark.timeout(360)
def test_whole_dcs_hung_keeps_the_primary_writable(spec_path, cluster):
    # Failsafe mode is what held the primary: it says so on its REST API while etcd is frozen.
    primary = database.primary(cluster.spec)
    url = f"http://127.0.0.1:{cluster.spec.ports.patroni_api(int(primary[-1]))}/patroni"
    seen, done = [], threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            try:
                seen.append(bool(httpx.get(url, timeout=2).json().get("failsafe_mode_is_active")))
            except (httpx.HTTPError, ValueError):
                pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        drill_with_writer(spec_path, cluster, "dcs-hang", "--hang", "30", "--runs", "4", "--seconds", "5")
    finally:
        done.set()
        watcher.join()
    assert any(seen), "failsafe mode never became active on the primary"
