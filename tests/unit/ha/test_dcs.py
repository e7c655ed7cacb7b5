"""The DCS of the HA pair: three etcd members, Patroni's view of them, failsafe mode, ports."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from airscale.assembly import CAPABILITIES
from airscale.ha import database
from airscale.runtime.components import components
from airscale.runtime.layout import Layout
from airscale.runtime.prereq import planned_ports
from airscale.runtime.secrets import Secrets
from airscale.spec import Ports, Spec

SECRETS = Secrets.generate()
LAYOUT = Layout(Path("/srv/airscale/dcs"))
BIN = Path("/usr/lib/postgresql/15/bin")
BASE = 30000


def spec(**ha_db) -> Spec:
    return Spec.model_validate({"cluster": {"base_port": BASE}, "ha": {"database": {"enabled": True, **ha_db}}})


def etcd_components() -> dict[str, object]:
    return {c.name: c for c in components(spec(), LAYOUT, BIN, CAPABILITIES) if c.kind == "etcd"}


def flag(command: tuple[str, ...], name: str) -> str:
    return command[command.index(name) + 1]


def test_three_etcd_members_in_stage_zero():
    comps = etcd_components()
    assert sorted(comps) == ["etcd-1", "etcd-2", "etcd-3"]
    assert {c.stage for c in comps.values()} == {0}


@pytest.mark.parametrize(
    "member, client, peer",
    [
        # Member 1 keeps the single member's ports (a running Patroni finds the new DCS there).
        pytest.param(1, BASE + 90, BASE + 91, id="member-1-old-ports"),
        pytest.param(2, BASE + 96, BASE + 97, id="member-2"),
        pytest.param(3, BASE + 98, BASE + 99, id="member-3"),
    ],
)
def test_member_ports_and_data_folder(member, client, peer):
    cmd = etcd_components()[f"etcd-{member}"].command
    assert (Ports(BASE).etcd_client(member), Ports(BASE).etcd_peer(member)) == (client, peer)
    assert flag(cmd, "--name") == f"etcd-{member}"
    assert flag(cmd, "--listen-client-urls") == flag(cmd, "--advertise-client-urls") == f"http://127.0.0.1:{client}"
    assert flag(cmd, "--listen-peer-urls") == flag(cmd, "--initial-advertise-peer-urls") == f"http://127.0.0.1:{peer}"
    assert flag(cmd, "--data-dir") == str(LAYOUT.root / "ha" / f"etcd-{member}")


@pytest.mark.parametrize(
    "what",
    [
        pytest.param("--initial-cluster", id="same-initial-cluster"),
        pytest.param("--initial-cluster-token", id="same-token"),
        pytest.param("--initial-cluster-state", id="same-state"),
    ],
)
def test_members_agree_on_the_cluster(what):
    values = {flag(c.command, what) for c in etcd_components().values()}
    assert len(values) == 1, values


def test_initial_cluster_lists_every_peer_and_token_is_new():
    cmd = etcd_components()["etcd-1"].command
    ports = Ports(BASE)
    assert flag(cmd, "--initial-cluster") == ",".join(
        f"etcd-{m}=http://127.0.0.1:{ports.etcd_peer(m)}" for m in (1, 2, 3))
    # not the single member's token, so an old and a new member never mix
    assert flag(cmd, "--initial-cluster-token") != f"airscale-{spec().cluster.name}"


@pytest.mark.parametrize(
    "key, expected",
    [
        pytest.param("hosts", [f"127.0.0.1:{BASE + 90}", f"127.0.0.1:{BASE + 96}", f"127.0.0.1:{BASE + 98}"],
                     id="patroni-lists-all-members"),
    ],
)
def test_patroni_etcd3_section(key, expected):
    for i in database.NODES:
        assert database.patroni_config(spec(), LAYOUT, SECRETS, BIN, i)["etcd3"][key] == expected


@pytest.mark.parametrize(
    "key, expected",
    [
        pytest.param("failsafe_mode", True, id="failsafe-on"),
        pytest.param("retry_timeout", 7, id="retry-timeout"),
        pytest.param("ttl", 20, id="ttl-default"),
    ],
)
def test_bootstrap_dcs(key, expected):
    assert database.patroni_config(spec(), LAYOUT, SECRETS, BIN, 1)["bootstrap"]["dcs"][key] == expected


def test_every_port_of_the_block_is_distinct_and_in_it():
    s = spec()
    planned = planned_ports(s, CAPABILITIES)
    ha = database.ports(s)
    assert set(ha) <= set(planned)
    assert len(set(planned.values())) == len(planned), planned
    log_servers = {s.ports.worker_log_server(i) for i in range(40)}
    assert all(BASE <= p < BASE + 100 for p in planned.values())
    assert not (set(ha.values()) & log_servers)
    assert sorted(ha.values()) == list(range(BASE + 90, BASE + 100))


def test_no_ha_ports_without_ha():
    assert not any(k.startswith(("etcd", "pg-")) for k in planned_ports(Spec.model_validate({}), CAPABILITIES))


@pytest.mark.parametrize(
    "name, member",
    [pytest.param("etcd-1", 1, id="etcd-1"), pytest.param("etcd-3", 3, id="etcd-3")],
)
def test_health_reads_the_members_own_port(monkeypatch, name, member):
    asked = []

    def get(url, timeout):
        asked.append(url)
        return httpx.Response(200, json={"health": "true"})

    def post(url, json, timeout):
        asked.append(url)
        return httpx.Response(200, json={"header": {"member_id": "7"}, "leader": "7" if member == 1 else "9"})

    monkeypatch.setattr(database.httpx, "get", get)
    monkeypatch.setattr(database.httpx, "post", post)
    role = "raft leader" if member == 1 else "follower"
    assert database.etcd_health(spec(), database.etcd_member(name)) == (True, f"healthy, {role}")
    client = f"http://127.0.0.1:{Ports(BASE).etcd_client(member)}"
    assert asked == [f"{client}/health", f"{client}/v3/maintenance/status"]


@pytest.mark.parametrize(
    "config, answers, patched, result",
    [
        pytest.param({"ttl": 20}, True, True, True, id="old-cluster-gets-patched"),
        pytest.param({"ttl": 20, "failsafe_mode": True}, True, False, True, id="already-on"),
        pytest.param(None, False, False, None, id="nothing-running"),
        # Patroni answers 502 (no JSON) while a new DCS has no /config yet.
        pytest.param("no config", True, False, False, id="dcs-being-repopulated"),
    ],
)
def test_ensure_failsafe(monkeypatch, config, answers, patched, result):
    patches = []

    def get(url, timeout):
        if not answers:
            raise httpx.ConnectError("refused")
        if isinstance(config, str):
            return httpx.Response(502, text=config)
        return httpx.Response(200, json=config)

    def patch(url, json, auth, timeout):
        patches.append((url, json, auth))
        return httpx.Response(200, json={**config, **json}, request=httpx.Request("PATCH", url))

    monkeypatch.setattr(database.httpx, "get", get)
    monkeypatch.setattr(database.httpx, "patch", patch)
    assert database.ensure_failsafe(spec(), SECRETS) is result
    if patched:
        url = f"http://127.0.0.1:{Ports(BASE).patroni_api(1)}/config"
        assert patches == [(url, {"failsafe_mode": True},
                            ("patroni", database.derived_password(SECRETS, "patroni-api")))]
    else:
        assert patches == []


@pytest.mark.parametrize(
    "old_folder, expected",
    [pytest.param(True, True, id="single-member-cluster"), pytest.param(False, False, id="three-members")],
)
def test_single_member_dcs_is_recognised(tmp_path, old_folder, expected):
    layout = Layout(tmp_path)
    if old_folder:
        (tmp_path / "ha" / database.OLD_ETCD_DATA).mkdir(parents=True)
    assert database.single_member_dcs(layout) is expected
