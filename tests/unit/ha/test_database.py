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
        assert cmd[cmd.index("--auto-compaction-retention") + 1] == "1h"


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
