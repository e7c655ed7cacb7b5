"""`ha.broker`: the pure parts of Redis with Sentinel (configs, URLs, transport options, the
primary read from the Sentinels' files, health from INFO, the restart delay, the spec rules)."""

import configparser
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from airscale.assembly import CAPABILITIES
from airscale.runtime import broker
from airscale.runtime.airflow_config import render_airflow_cfg
from airscale.runtime.components import components
from airscale.runtime.health import replica_health
from airscale.runtime.layout import Layout
from airscale.runtime.redis import primary_in_files, render_redis_conf, render_sentinel_conf, sentinel_id
from airscale.runtime.restart_listener import keeper_config, reconcile
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

SECRETS = Secrets.generate()
PW = SECRETS.redis_password
LAYOUT = Layout(Path("/srv/airscale/test"))
HA = {"cluster": {"base_port": 30000}, "ha": {"broker": {"enabled": True}}}


def spec(**data) -> Spec:
    return Spec.model_validate(data).model_copy(update={"base_dir": Path("/srv/spec"),
                                                        "spec_file": Path("/srv/spec/airscale.yaml")})


def lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.mark.parametrize("node, primary, present, absent", [
    pytest.param(1, 1, ["port 30002", f"masterauth {PW}", "appendonly yes", "appendfsync everysec",
                        "notify-keyspace-events Kl", "dir /srv/airscale/test/redis"],
                 ["replicaof"], id="node-1-primary"),
    pytest.param(2, 1, ["port 30013", "replicaof 127.0.0.1 30002", f"masterauth {PW}", "appendonly yes",
                        "notify-keyspace-events Kl", "dir /srv/airscale/test/redis-2"],
                 [], id="node-2-replica"),
    pytest.param(1, 2, ["port 30002", "replicaof 127.0.0.1 30013"], [], id="node-1-after-a-failover"),
    pytest.param(2, 2, ["port 30013"], ["replicaof"], id="node-2-promoted"),
])
def test_node_conf(node, primary, present, absent):
    text = render_redis_conf(spec(**HA), LAYOUT, SECRETS, node, primary)
    for line in present:
        assert line in lines(text)
    for word in absent:
        assert word not in text


def test_single_redis_has_no_replication_lines():
    text = render_redis_conf(spec(), LAYOUT, SECRETS)
    assert "masterauth" not in text and "replicaof" not in text and "appendonly yes" in lines(text)


@pytest.mark.parametrize("i, primary, down_after, present", [
    pytest.param(1, 1, 5, ["port 30014", "sentinel monitor airscale 127.0.0.1 30002 2",
                           "sentinel down-after-milliseconds airscale 5000",
                           "sentinel failover-timeout airscale 20000", "dir /srv/airscale/test/sentinel-1"],
                 id="sentinel-1"),
    pytest.param(3, 2, 3, ["port 30016", "sentinel monitor airscale 127.0.0.1 30013 2",
                           "sentinel down-after-milliseconds airscale 3000"], id="sentinel-3-after-failover"),
])
def test_sentinel_conf(i, primary, down_after, present):
    s = spec(cluster={"base_port": 30000}, ha={"broker": {"enabled": True, "down_after": down_after}})
    text = render_sentinel_conf(s, LAYOUT, SECRETS, i, primary)
    for line in present + [f"requirepass {PW}", f"sentinel auth-pass airscale {PW}",
                           f"sentinel sentinel-pass {PW}", f"sentinel myid {sentinel_id(s, i)}"]:
        assert line in lines(text), line
    # `monitor` must come before the lines that name its master
    assert text.index("sentinel monitor") < text.index("sentinel auth-pass")
    assert len(sentinel_id(s, i)) == 40 and sentinel_id(s, 1) != sentinel_id(s, 2)


@pytest.mark.parametrize("texts, expected", [
    pytest.param([], None, id="no-files"),
    pytest.param(["sentinel monitor airscale 127.0.0.1 30013 2"] * 2 + ["sentinel monitor airscale 127.0.0.1 30002 2"],
                 2, id="majority-after-failover"),
    pytest.param(['dir "/x"\nsentinel monitor airscale 127.0.0.1 30002 2\nsentinel known-replica airscale 127.0.0.1 30013'],
                 1, id="rewritten-file"),
    pytest.param(["sentinel monitor airscale 127.0.0.1 40000 2"], None, id="unknown-port"),
])
def test_primary_in_files(texts, expected):
    assert primary_in_files(spec(**HA), texts) == expected


@pytest.mark.parametrize("data, url", [
    pytest.param({"cluster": {"base_port": 30000}}, f"redis://:{PW}@127.0.0.1:30002/0", id="single"),
    pytest.param(HA, ";".join(f"sentinel://:{PW}@127.0.0.1:{p}/0" for p in (30014, 30015, 30016)), id="sentinel"),
    pytest.param({"broker": {"url": "redis://:x@h:6379/1"}}, "redis://:x@h:6379/1", id="external"),
    pytest.param({**HA, "cluster": {"base_port": 30000, "profile": "dev"}}, f"redis://:{PW}@127.0.0.1:30002/0",
                 id="dev-profile-ignores-ha-broker"),
])
def test_celery_url(data, url):
    assert broker.celery_url(spec(**data), SECRETS) == url


@pytest.mark.parametrize("data, expected", [
    pytest.param({}, {}, id="single"),
    pytest.param(HA, {"master_name": "airscale", "sentinel_kwargs": {"password": PW, "socket_timeout": 3.0},
                      "socket_timeout": 5.0, "socket_connect_timeout": 3.0}, id="sentinel"),
])
def test_transport_options(data, expected):
    assert broker.transport_options(spec(**data), SECRETS) == expected


def cfg(s: Spec) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(render_airflow_cfg(s, LAYOUT, SECRETS, CAPABILITIES))
    return cp


@pytest.mark.parametrize("result_backend, sections", [
    pytest.param("redis", {"celery_broker_transport_options", "celery_result_backend_transport_options"},
                 id="results-in-redis"),
    pytest.param("database", {"celery_broker_transport_options"}, id="results-in-database"),
])
def test_airflow_cfg_goes_through_the_sentinels(result_backend, sections):
    c = cfg(spec(**HA, broker={"result_backend": result_backend}))
    assert c["celery"]["broker_url"].startswith("sentinel://")
    assert c["celery"]["result_backend"].startswith("sentinel://" if result_backend == "redis" else "db+")
    for section in sections:
        assert c[section]["master_name"] == "airscale"
        # the provider json.loads sentinel_kwargs (default_celery.py)
        assert json.loads(c[section]["sentinel_kwargs"])["password"] == PW
    assert c["celery_broker_transport_options"]["visibility_timeout"] == "21600"
    if result_backend == "redis":
        assert json.loads(c["celery"]["extra_celery_config"])["redis_socket_timeout"] == broker.SOCKET_TIMEOUT
    else:
        assert "celery_result_backend_transport_options" not in c


def test_components_ports_and_restart_delay():
    s = spec(**HA)
    comps = {c.name: c for c in components(s, LAYOUT, Path("/usr/lib/postgresql/15/bin"), CAPABILITIES)}
    for name in ("redis", "redis-2"):
        assert comps[name].kind == "redis" and comps[name].stage == 1
        assert comps[name].restart_delay == s.ha.broker.down_after + broker.FAILOVER_MARGIN_S
    for i in (1, 2, 3):
        c = comps[f"sentinel-{i}"]
        assert c.command == ("redis-server", f"/srv/airscale/test/sentinel-{i}/sentinel.conf", "--sentinel")
        assert not any(PW in part for part in c.command)  # secrets only in 0600 files
    assert "redis-2" not in {c.name for c in components(spec(), LAYOUT, Path("/x"), CAPABILITIES)}
    ports = [s.ports.redis_node(1), s.ports.redis_node(2), *(s.ports.sentinel(i) for i in (1, 2, 3))]
    assert ports == [30002, 30013, 30014, 30015, 30016]


def test_keeper_asks_the_sentinels_without_holding_the_password():
    s = spec(**HA)
    cfg_ = keeper_config(s, components(s, LAYOUT, Path("/x"), CAPABILITIES))
    dep = cfg_["dependencies"]["broker"]
    assert dep == {"kind": "sentinel", "sentinels": [["127.0.0.1", p] for p in (30014, 30015, 30016)],
                   "secrets": str(s.data_path / "secrets.json")}
    assert PW not in json.dumps(cfg_)
    assert cfg_["min_delay"] == {"redis": 10.0, "redis-2": 10.0}


@pytest.mark.parametrize("min_delay, due_in", [
    pytest.param({}, 1.0, id="plain-backoff"),
    pytest.param({"redis": 10.0}, 10.0, id="waits-for-the-failover"),
])
def test_restart_delay_is_a_floor(min_delay, due_in):
    infos = {"redis": {"statename": "EXITED", "start": 50.0, "stop": 99.0, "exitstatus": -1}}
    p = reconcile(100.0, infos, {}, {"redis": []}, set(), 60.0, min_delay)
    assert p.starts == [] and p.tracks["redis"].due == 100.0 + due_in


@pytest.mark.parametrize("info, expected", [
    pytest.param({"role": "master", "connected_slaves": 1}, (True, "primary, 1 replica(s)"), id="primary"),
    pytest.param({"role": "slave", "master_port": 30002, "master_link_status": "up"},
                 (True, "replica of redis, link up"), id="replica-up"),
    pytest.param({"role": "slave", "master_port": 30013, "master_link_status": "down"},
                 (False, "replica of redis-2, link down"), id="replica-syncing"),
])
def test_replica_health(info, expected):
    assert replica_health(spec(**HA), info) == expected


def test_ha_broker_refuses_an_external_broker():
    with pytest.raises(ValidationError) as e:
        spec(broker={"url": "redis://h:6379/0"}, ha={"broker": {"enabled": True}})
    assert "ha.broker.enabled" in str(e.value) and "broker.url" in str(e.value)


def test_ha_broker_is_off_by_default_and_independent_of_ha_database():
    s = spec(ha={"database": {"enabled": True}})
    assert not s.ha.broker.enabled and not broker.sentinel_on(s)
