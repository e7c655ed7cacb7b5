"""The api-server made redundant (airscale.runtime.api_servers): names, ports, HAProxy's file
and how health is read from HAProxy's statistics."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from airscale.runtime import api_servers
from airscale.spec import Spec


def spec(**data) -> Spec:
    return Spec.model_validate({"cluster": {"base_port": 30000}, **data})


@pytest.mark.parametrize(
    "data, count",
    [
        pytest.param({}, 2, id="scale-default"),
        pytest.param({"cluster": {"profile": "dev"}}, 1, id="dev-default"),
        pytest.param({"api_server": {"count": 1}}, 1, id="scale-one"),
        pytest.param({"cluster": {"profile": "dev"}, "api_server": {"count": 3}}, 3, id="dev-three"),
    ],
)
def test_count_by_profile(data, count):
    s = Spec.model_validate(data)
    assert s.api_server.count == count
    assert api_servers.redundant(s) is (count > 1)


@pytest.mark.parametrize("count", [0, 9, -1, "two"])
def test_count_is_validated(count):
    with pytest.raises(ValidationError) as e:
        Spec.model_validate({"api_server": {"count": count}})
    assert "count" in str(e.value)


@pytest.mark.parametrize(
    "data, ports",
    [
        pytest.param({"api_server": {"count": 1}}, {"api-server": 30000}, id="single-on-the-api-port"),
        pytest.param({}, {"api-proxy (HAProxy)": 30000, "api-proxy (statistics)": 30040,
                          "api-server-1": 30041, "api-server-2": 30042}, id="two-behind-haproxy"),
        pytest.param({"api_server": {"count": 8}}, {"api-proxy (HAProxy)": 30000, "api-proxy (statistics)": 30040,
                                                    **{f"api-server-{i}": 30040 + i for i in range(1, 9)}},
                     id="eight"),
    ],
)
def test_ports(data, ports):
    assert api_servers.ports(spec(**data)) == ports


def test_ports_stay_in_the_block_and_apart_from_the_others():
    s = spec(api_server={"count": 8})
    mine = set(api_servers.ports(s).values())
    p = s.ports
    others = {p.postgres, p.redis, p.prometheus, p.alertmanager, p.exporter, p.statsd, p.grafana,
              p.postgres_exporter, p.redis_exporter, p.alert_receiver, p.autoscaler_metrics, p.pgbouncer,
              p.redis_node(2), *(p.sentinel(i) for i in (1, 2, 3)), *(p.etcd_client(i) for i in (1, 2, 3)),
              *(p.etcd_peer(i) for i in (1, 2, 3)), p.pg_node(1), p.pg_node(2), p.patroni_api(1), p.patroni_api(2),
              *(p.worker_log_server(i) for i in range(40))}
    assert not mine & others
    assert all(30000 <= port < 30100 for port in mine)


@pytest.mark.parametrize(
    "name, url",
    [
        pytest.param("api-server", "http://127.0.0.1:30000", id="single"),
        pytest.param("api-server-1", "http://127.0.0.1:30041", id="first"),
        pytest.param("api-server-3", "http://127.0.0.1:30043", id="third"),
    ],
)
def test_instance_url(name, url):
    assert api_servers.instance_url(spec(api_server={"count": 3}), name) == url


def test_haproxy_config_lists_every_instance_with_health_checks_and_retries():
    cfg = api_servers.haproxy_config(spec(api_server={"count": 3}, cluster={"base_port": 30000,
                                                                           "listen_host": "0.0.0.0"}))
    assert "bind 0.0.0.0:30000" in cfg
    assert "bind 127.0.0.1:30040" in cfg, "statistics stay on loopback"
    for i in (1, 2, 3):
        assert f"server api-server-{i} 127.0.0.1:{30040 + i} check" in cfg
    assert "option httpchk GET /api/v2/monitor/health" in cfg
    assert "retry-on conn-failure empty-response" in cfg and "option redispatch" in cfg
    assert "prometheus-exporter" in cfg
    # While every checked instance is marked down (a machine too loaded to answer checks in
    # time), requests still go to the instances rather than nowhere.
    assert "option allbackups" in cfg
    for i in (1, 2, 3):
        assert f"server api-server-{i}-fallback 127.0.0.1:{30040 + i} backup" in cfg


def test_haproxy_accepts_the_file(tmp_path):
    import shutil
    import subprocess

    if shutil.which("haproxy", path="/usr/sbin:/usr/bin") is None:
        pytest.skip("haproxy is not installed (scripts/bootstrap installs it)")
    f = tmp_path / "api-proxy.cfg"
    f.write_text(api_servers.haproxy_config(spec(api_server={"count": 3})))
    proc = subprocess.run([api_servers.haproxy_bin(), "-c", "-f", str(f)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


CSV = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status
api,FRONTEND,,,0,1,4096,5,0,0,0,0,0,,,,,OPEN
api_servers,api-server-1,0,0,0,1,,3,0,0,,0,,0,0,0,0,UP
api_servers,api-server-2,0,0,0,1,,2,0,0,,0,,0,0,0,0,DOWN 1/2
api_servers,api-server-1-fallback,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check
api_servers,BACKEND,0,0,0,1,410,5,0,0,0,0,,0,0,0,0,UP
stats,FRONTEND,,,1,1,4096,2,0,0,0,0,0,,,,,OPEN
"""


def test_server_states_from_the_statistics_csv():
    assert api_servers.server_states(CSV) == {"api-server-1": "UP", "api-server-2": "DOWN 1/2"}


@pytest.mark.parametrize(
    "answers, state, healthy, detail",
    [
        pytest.param(True, "UP", True, "ok; HAProxy: UP", id="in-rotation"),
        pytest.param(True, "DOWN 1/2", False, "ok; HAProxy: DOWN 1/2", id="answers-but-not-back-in-rotation"),
        pytest.param(True, "UP 1/2", False, "ok; HAProxy: UP 1/2", id="going-down"),
        pytest.param(False, "UP", False, "ok; HAProxy: UP", id="no-answer"),
        pytest.param(True, None, True, "ok; HAProxy's view unknown", id="haproxy-down-not-its-fault"),
    ],
)
def test_instance_health(answers, state, healthy, detail):
    assert api_servers.instance_health(answers, "ok", state) == (healthy, detail)


@pytest.mark.parametrize(
    "states, answers, healthy, detail",
    [
        pytest.param({"a": "UP", "b": "UP"}, True, True, "2/2 api-servers in rotation", id="both"),
        pytest.param({"a": "UP", "b": "DOWN"}, True, True, "1/2 api-servers in rotation", id="one"),
        pytest.param({"a": "DOWN", "b": "DOWN"}, True, False, "no api-server in rotation (of 2)", id="none"),
        pytest.param({"a": "UP"}, False, False, "no answer on the api port", id="port-silent"),
    ],
)
def test_proxy_health(states, answers, healthy, detail):
    assert api_servers.proxy_health(states, answers) == (healthy, detail)


def test_components_behind_haproxy():
    from pathlib import Path

    from airscale.runtime.components import api_server_components
    from airscale.runtime.layout import Layout

    comps = api_server_components(spec(), Layout(Path("/tmp/x")))
    by = {c.name: c for c in comps}
    assert list(by) == ["api-server-1", "api-server-2", "api-proxy"]
    assert by["api-server-2"].command[-4:] == ("--host", "127.0.0.1", "--port", "30042")
    assert by["api-server-1"].kind == by["api-server-2"].kind == "api-server"
    assert by["api-proxy"].reload_signal == "USR2" and "-W" in by["api-proxy"].command
    assert not by["api-proxy"].is_airflow
    assert {c.stage for c in comps} == {2}
