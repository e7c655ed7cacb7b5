"""PgBouncer in front of the embedded PostgreSQL: when it is on, what it is told, where Airflow connects."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from airscale.assembly import CAPABILITIES
from airscale.runtime import pgbouncer
from airscale.runtime.airflow_config import database_url, direct_database_url
from airscale.runtime.components import components
from airscale.runtime.layout import Layout
from airscale.runtime.prereq import planned_ports
from airscale.runtime.secrets import Secrets
from airscale.spec import Ports, Spec

SECRETS = Secrets.generate()
LAYOUT = Layout(Path("/srv/airscale/test"))


def spec(**data) -> Spec:
    return Spec.model_validate(data)


def ini(s: Spec) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(pgbouncer.render_ini(s, LAYOUT))
    return cp


@pytest.mark.parametrize("data, expected", [
    pytest.param({}, False, id="off-by-default"),
    pytest.param({"ha": {"database": {"enabled": True}}}, True, id="on-with-ha-database"),
    pytest.param({"ha": {"database": {"enabled": True}}, "database": {"pgbouncer": False}}, False,
                 id="ha-but-turned-off"),
    pytest.param({"database": {"pgbouncer": True}}, True, id="asked-for-without-ha"),
    pytest.param({"database": {"url": "postgresql://a:b@db:5432/airflow"}}, False, id="external-database"),
])
def test_enabled(data, expected):
    s = spec(**data)
    assert pgbouncer.enabled(s) is expected
    assert ("pgbouncer" in {c.name for c in components(s, LAYOUT, Path("/usr/lib/postgresql/15/bin"), CAPABILITIES)}) is expected
    assert ("pgbouncer" in planned_ports(s)) is expected


def test_external_database_with_pgbouncer_is_refused():
    with pytest.raises(ValueError, match="embedded PostgreSQL only"):
        spec(database={"url": "postgresql://a:b@db:5432/airflow", "pgbouncer": True})


@pytest.mark.parametrize("data, key, value", [
    pytest.param({}, "listen_port", str(Ports(28080).pgbouncer), id="own-port-from-base"),
    pytest.param({"cluster": {"base_port": 30000}}, "listen_port", "30012", id="port-follows-base"),
    pytest.param({}, "listen_addr", "127.0.0.1", id="loopback-by-default"),
    pytest.param({}, "pool_mode", "transaction", id="transaction-pooling"),
    pytest.param({}, "auth_type", "scram-sha-256", id="scram"),
    pytest.param({}, "server_login_retry", "1", id="fast-reconnect-after-failover"),
    pytest.param({}, "unix_socket_dir", "", id="no-shared-socket"),
    pytest.param({"tuning": {"enabled": False}}, "default_pool_size", str(pgbouncer.STOCK_POOL_SIZE),
                 id="stock-pool-without-plan"),
    pytest.param({"database": {"max_connections": 50}}, "max_db_connections", "40",
                 id="server-connections-below-max-connections"),
])
def test_ini(data, key, value):
    s = spec(**{"database": {"pgbouncer": True}, **data})
    assert ini(s)["pgbouncer"][key] == value


def test_pool_size_comes_from_the_plan():
    from airscale.tuning.apply import plan_for

    s = spec(database={"pgbouncer": True})
    planned = plan_for(s).get("pgbouncer", "metadata_pool_size").value
    assert ini(s)["pgbouncer"]["default_pool_size"] == str(planned)
    assert ini(s)["databases"]["airflow"] == f"host=127.0.0.1 port={Ports(28080).postgres} dbname=airflow"


def test_airflow_goes_through_pgbouncer_and_migrations_do_not():
    s = spec(database={"pgbouncer": True})
    assert f":{Ports(28080).pgbouncer}/airflow" in database_url(s, SECRETS)
    assert f":{Ports(28080).postgres}/airflow" in direct_database_url(s, SECRETS)
    off = spec()
    assert database_url(off, SECRETS) == direct_database_url(off, SECRETS)


def test_password_only_in_the_userlist():
    s = spec(database={"pgbouncer": True})
    assert SECRETS.airflow_db_password not in pgbouncer.render_ini(s, LAYOUT)
    assert pgbouncer.render_userlist(SECRETS) == f'"airflow" "{SECRETS.airflow_db_password}"\n'
    comp = pgbouncer.component(s, LAYOUT)
    assert not any(SECRETS.airflow_db_password in a for a in comp.command)
