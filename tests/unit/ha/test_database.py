"""The PostgreSQL HA pair derived from the spec: Patroni, HAProxy, components, status lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from airscale.assembly import CAPABILITIES
from airscale.ha import database
from airscale.runtime.components import components
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Ports, Spec

SECRETS = Secrets.generate()
LAYOUT = Layout(Path("/srv/airscale/ha"))
BIN = Path("/usr/lib/postgresql/15/bin")


def spec(**ha_db) -> Spec:
    return Spec.model_validate({"cluster": {"base_port": 30000}, "ha": {"database": {"enabled": True, **ha_db}}})


def test_components_replace_the_single_postgres():
    comps = {c.name: c for c in components(spec(), LAYOUT, BIN, CAPABILITIES)}
    assert {"etcd-1", "etcd-2", "etcd-3", "pg-1", "pg-2", "postgres"} <= set(comps)
    assert comps["postgres"].command[0].endswith("haproxy")  # Airflow's endpoint is HAProxy
    assert comps["etcd-3"].stage < comps["pg-1"].stage == comps["postgres"].stage < comps["api-server-1"].stage
    off = components(Spec.model_validate({}), LAYOUT, BIN, CAPABILITIES)
    assert "pg-1" not in {c.name for c in off}


def test_etcd_members_compact_their_history():
    # Patroni's renewals every loop_wait would otherwise grow etcd until its quota stops writes.
    comps = {c.name: c for c in components(spec(), LAYOUT, BIN, CAPABILITIES)}
    for name in ("etcd-1", "etcd-2", "etcd-3"):
        cmd = comps[name].command
        assert cmd[cmd.index("--auto-compaction-mode") + 1] == "periodic"
        assert cmd[cmd.index("--auto-compaction-retention") + 1] == "5m"
        assert cmd[cmd.index("--snapshot-count") + 1] == "10000"


def test_patroni_nodes_differ_only_where_they_must():
    s = spec(ttl=40, loop_wait=10)
    a, b = (database.patroni_config(s, LAYOUT, SECRETS, BIN, i) for i in database.NODES)
    ports = Ports(30000)
    assert (a["name"], b["name"]) == ("pg-1", "pg-2")
    assert a["postgresql"]["listen"].endswith(f":{ports.pg_node(1)}")
    assert b["restapi"]["listen"].endswith(f":{ports.patroni_api(2)}")
    assert a["bootstrap"] == b["bootstrap"]
    assert a["bootstrap"]["dcs"]["ttl"] == 40 and a["bootstrap"]["dcs"]["loop_wait"] == 10
    assert a["etcd3"] == b["etcd3"]
    # the replication password is derived, stable, and not the superuser's
    repl = a["postgresql"]["authentication"]["replication"]["password"]
    assert repl == b["postgresql"]["authentication"]["replication"]["password"]
    assert repl != SECRETS.postgres_superuser_password


def test_haproxy_routes_by_patroni_primary_check():
    cfg = database.haproxy_config(spec())
    ports = Ports(30000)
    assert f"bind 127.0.0.1:{ports.postgres}" in cfg
    assert "option httpchk GET /primary" in cfg
    assert "on-marked-down shutdown-sessions" in cfg
    for i in database.NODES:
        assert f"127.0.0.1:{ports.pg_node(i)} " in cfg and f"check port {ports.patroni_api(i)}" in cfg


def test_haproxy_reads_from_the_standby_only_while_no_node_is_primary():
    cfg = database.haproxy_config(spec())
    listen, standbys = cfg.split("listen postgres", 1)[1].split("backend standbys")
    servers = [line.split() for line in listen.splitlines() if line.strip().startswith("server ")]
    primaries = [s for s in servers if "backup" not in s]
    backups = [s for s in servers if "backup" in s]
    assert [s[1] for s in primaries] == [database.node_name(i) for i in database.NODES]
    # A primary marked up again takes every session back from the standby.
    assert all(s[-2:] == ["on-marked-up", "shutdown-backup-sessions"] for s in primaries)
    # Each node is a backup, up only while its Patroni says it is a streaming standby close enough.
    names = [database.node_name(i) for i in database.NODES]
    assert [(s[1], s[-1]) for s in backups] == [(f"{n}-standby", f"standbys/{n}") for n in names]
    assert f"option httpchk GET /replica?lag={database.STANDBY_READ_MAX_LAG_BYTES}" in standbys
    assert "allbackups" not in cfg  # one standby at a time


def test_haproxy_accepts_the_database_file(tmp_path):
    import shutil
    import subprocess

    haproxy = shutil.which("haproxy", path="/usr/sbin:/usr/bin")
    if haproxy is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap installs it)")
    f = tmp_path / "postgres-proxy.cfg"
    f.write_text(database.haproxy_config(spec()))
    proc = subprocess.run([haproxy, "-c", "-f", str(f)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "member, ok, detail",
    [
        pytest.param({"role": "leader", "state": "running"}, True, "PRIMARY (running)", id="primary"),
        pytest.param({"role": "replica", "state": "streaming", "lag": 0}, True,
                     "standby (streaming), replication lag 0 B", id="standby-streaming"),
        pytest.param({"role": "replica", "state": "running", "lag": 2048}, True,
                     "standby (running), replication lag 2048 B", id="standby-lagging"),
        pytest.param({"role": "replica", "state": "starting", "lag": "unknown"}, False,
                     "standby (starting), replication lag unknown", id="standby-starting"),
        pytest.param(None, False, "not in the Patroni cluster", id="absent"),
    ],
)
def test_status_line(member, ok, detail):
    assert database.describe(member) == (ok, detail)
