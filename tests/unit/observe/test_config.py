"""Monitoring configuration derived from the spec: components, Prometheus, Alertmanager, secrets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airscale.assembly import CAPABILITIES
from airscale.errors import AirscaleError
from airscale.observe.alertmanager import (
    alertmanager_config,
    prometheus_config,
    scrape_targets,
)
from airscale.observe.launch import read_env_file
from airscale.observe.receiver import alert_lines
from airscale.observe.settings import monitoring_active, statsd_settings
from airscale.observe.stack import (
    KINDS,
    env_files,
    monitoring_components,
    write_configs,
)
from airscale.runtime.airflow_config import merged_settings
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec, parse_spec

SECRETS = Secrets.generate()
LAYOUT = Layout(Path("/tmp/airscale-obs-unit"))


def spec(**data) -> Spec:
    return Spec.model_validate(data)


@pytest.mark.parametrize("data, active", [
    pytest.param({}, True, id="scale-default-on"),
    pytest.param({"cluster": {"profile": "dev"}}, False, id="dev-default-off"),
    pytest.param({"cluster": {"profile": "dev"}, "monitoring": {"enabled": True}}, True, id="dev-opt-in"),
    pytest.param({"monitoring": {"enabled": False}}, False, id="scale-opt-out"),
])
def test_monitoring_active(data, active):
    s = spec(**data)
    assert monitoring_active(s) is active
    assert bool(monitoring_components(s, LAYOUT, [])) is active
    assert ("metrics" in merged_settings(s, LAYOUT, SECRETS, CAPABILITIES)) is active


def test_airflow_sends_tagged_statsd_to_the_exporter():
    m = merged_settings(spec(cluster={"base_port": 29500}), LAYOUT, SECRETS, CAPABILITIES)["metrics"]
    assert m["statsd_port"] == 29506 and m["statsd_influxdb_enabled"] and not m["legacy_names_on"]
    assert m["stat_name_handler"] == "airscale.observe.statname.add_component"


def test_no_secret_on_any_command_line():
    s = spec()
    text = " ".join(" ".join(c.command) + json.dumps(c.env) for c in monitoring_components(s, LAYOUT, []))
    for value in SECRETS.values():
        assert value not in text


def test_components_use_the_cluster_ports_and_no_default_port():
    s = spec(cluster={"base_port": 29500})
    cmds = {c.name: " ".join(c.command) for c in monitoring_components(s, LAYOUT, [])}
    assert set(cmds) == set(KINDS)
    assert "127.0.0.1:29503" in cmds["prometheus"] and "127.0.0.1:29504" in cmds["alertmanager"]
    assert "--cluster.listen-address=" in cmds["alertmanager"]  # no gossip on 9094
    assert "29508" in cmds["postgres-exporter"] and "29509" in cmds["redis-exporter"]
    assert "29510" in cmds["alert-receiver"]


def test_config_files_are_inputs_and_prometheus_alertmanager_reload_in_place():
    comps = {c.name: c for c in monitoring_components(spec(), LAYOUT, [])}
    assert {p.name for p in comps["prometheus"].reads} == {"prometheus.yml", "airscale.rules.yml"}
    assert comps["prometheus"].reload_signal == comps["alertmanager"].reload_signal == "HUP"
    assert comps["exporter"].reload_signal is None and any(p.name == "exporter.json" for p in comps["exporter"].reads)
    assert comps["prometheus"].env["GOGC"] == "50"  # upstream's collector setting since 2.53
    assert comps["exporter"].env["MALLOC_MMAP_THRESHOLD_"] == "131072"  # scrape buffers go back at once
    # No digest in the environment: a changed threshold must not change the program (a restart).
    assert all("AIRSCALE_CONFIG_DIGEST" not in c.env for c in comps.values())


def test_routes_reach_every_receiver_with_grouping_and_inhibition():
    s = spec(monitoring={"receivers": [
        {"name": "oncall", "severities": ["critical"], "slack": {"api_url": "https://hooks.slack.example/x"}},
        {"name": "team", "webhook_urls": ["https://example.org/hook"],
         "email": {"to": "a@example.org", "sender": "af@example.org", "smarthost": "smtp:587"}},
    ]})
    am = alertmanager_config(s)
    routes = {r["receiver"]: r for r in am["route"]["routes"]}
    assert set(routes) == {"local", "oncall", "team"} and all(r["continue"] for r in routes.values())
    assert routes["oncall"]["matchers"] == ['severity=~"critical"']
    assert "alertname" in am["route"]["group_by"]
    receivers = {r["name"]: r for r in am["receivers"]}
    assert receivers["oncall"]["slack_configs"][0]["api_url"] == "https://hooks.slack.example/x"
    assert receivers["team"]["email_configs"][0]["smarthost"] == "smtp:587"
    assert any(i["target_matchers"] == ['alertname="SchedulerHeartbeatStale"'] for i in am["inhibit_rules"])


@pytest.mark.skipif(not Path("/usr/bin/amtool").exists(), reason="amtool (prometheus-alertmanager) missing")
def test_amtool_accepts_the_config(tmp_path):
    from airscale.observe.alertmanager import render_alertmanager

    f = tmp_path / "am.yml"
    f.write_text(render_alertmanager(spec(monitoring={"receivers": [
        {"name": "team", "webhook_urls": ["https://example.org/hook"],
         "email": {"to": "a@example.org", "sender": "af@example.org", "smarthost": "smtp:587",
                   "auth_username": "u", "auth_password": "p"}}]})))
    proc = subprocess.run(["amtool", "check-config", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scrape_targets():
    # The default queue (1-2 workers) is autoscaled: the autoscaler is scraped unless turned off.
    assert set(scrape_targets(spec(autoscaling={"enabled": False}))) == {
        "prometheus", "alertmanager", "airscale", "postgres", "redis", "api-proxy"}
    assert "api-proxy" not in scrape_targets(spec(autoscaling={"enabled": False}, api_server={"count": 1}))
    with_autoscaler = scrape_targets(spec())
    assert "autoscaler" in with_autoscaler
    cfg = prometheus_config(spec(cluster={"name": "prod"}), "/r")
    assert cfg["global"]["external_labels"] == {"cluster": "prod"}


@pytest.mark.parametrize("data, field", [
    pytest.param({"receivers": [{"name": "x"}]}, "no target", id="receiver-without-target"),
    pytest.param({"receivers": [{"name": "local", "webhook_urls": ["http://a"]}]}, "reserved", id="reserved-name"),
    pytest.param({"receivers": [{"name": "x", "webhook_urls": ["ftp://a"]}]}, "http", id="bad-url"),
    pytest.param({"receivers": [{"name": "x", "severities": ["page"], "webhook_urls": ["http://a"]}]},
                 "severities", id="bad-severity"),
    pytest.param({"thresholds": {"failure_window": "15 minutes"}}, "duration", id="bad-duration"),
    pytest.param({"thresholds": {"queued_task_warning_seconds": 900}}, "queued_task_warning_seconds",
                 id="warning-above-critical"),
    pytest.param({"scrape_interval": 5}, "unknown field", id="typo"),
])
def test_bad_monitoring_spec_names_the_field(data, field):
    with pytest.raises(AirscaleError) as e:
        parse_spec(yaml.safe_dump({"monitoring": data}), Path("a.yaml"))
    assert "monitoring" in str(e.value) and field in str(e.value)


def test_write_configs_keeps_secrets_private(tmp_path):
    layout = Layout(tmp_path)
    s = spec(monitoring={"receivers": [{"name": "oncall", "slack": {"api_url": "https://hooks.slack.example/x"}}]})
    write_configs(s, layout, SECRETS, [])
    mon = tmp_path / "monitoring"
    for name in ("alertmanager.yml", "postgres-exporter.env", "redis-exporter.env", "exporter.env"):
        assert stat.S_IMODE((mon / name).stat().st_mode) == 0o600, name
    for name in ("postgres-exporter.env", "redis-exporter.env", "exporter.env"):
        assert not any(v in (mon / name).read_text() for v in SECRETS.values()), name
    for name in ("postgres-exporter.password", "exporter.dsn", "redis-exporter.passwords.json"):
        assert stat.S_IMODE((mon / name).stat().st_mode) == 0o600, name
    assert (mon / "postgres-exporter.password").read_text() == SECRETS.postgres_superuser_password
    assert SECRETS.redis_password in (mon / "redis-exporter.passwords.json").read_text()
    for name in ("prometheus.yml", "exporter.json", "rules/airscale.rules.yml"):
        text = (mon / name).read_text()
        assert not any(v in text for v in SECRETS.values()) and "hooks.slack" not in text
    from airscale.observe.stack import MonitoringLayout

    envs, _ = env_files(s, SECRETS, MonitoringLayout.of(tmp_path))
    assert set(envs) == {"postgres-exporter", "redis-exporter", "exporter"}


def test_launch_refuses_a_readable_env_file_and_passes_env(tmp_path):
    f = tmp_path / "x.env"
    f.write_text("A_SECRET=s3cr3t\n")
    os.chmod(f, 0o644)
    with pytest.raises(SystemExit):
        read_env_file(f)
    os.chmod(f, 0o600)
    proc = subprocess.run([sys.executable, "-m", "airscale.observe.launch", str(f), "--", "sh", "-c",
                           "echo $A_SECRET"], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "s3cr3t"


def test_receiver_writes_one_line_per_alert():
    payload = {"receiver": "local", "alerts": [
        {"status": "firing", "labels": {"alertname": "TaskFailed", "severity": "warning", "dag_id": "a"},
         "annotations": {"summary": "s"}, "startsAt": "t"},
        {"status": "resolved", "labels": {"alertname": "ComponentDown", "severity": "critical"}},
    ]}
    lines = [json.loads(x) for x in alert_lines(payload, 1.0)]
    assert [(a["alertname"], a["status"], a["severity"]) for a in lines] == [
        ("TaskFailed", "firing", "warning"), ("ComponentDown", "resolved", "critical")]
    assert lines[0]["labels"]["dag_id"] == "a" and lines[0]["received_at"] == 1.0


def test_statsd_host_is_loopback_when_listening_everywhere():
    assert statsd_settings(spec(cluster={"listen_host": "0.0.0.0"}))["statsd_host"] == "127.0.0.1"


@pytest.mark.parametrize("task_kwargs, expected", [
    pytest.param({}, {"retry_exponential_backoff", "max_retry_delay", "execution_timeout"}, id="sets-none"),
    pytest.param({"retry_exponential_backoff": 0, "execution_timeout": None}, {"max_retry_delay"},
                 id="author-wins-even-with-falsy-values"),
    pytest.param({"retry_exponential_backoff": 3, "max_retry_delay": 1, "execution_timeout": 5}, set(),
                 id="sets-all"),
])
def test_policy_defaults_only_where_unset(task_kwargs, expected):
    from airscale.observe.policy import defaults_for, policy_settings

    s = spec(monitoring={"task_policy": {"execution_timeout_seconds": 60}})
    assert set(defaults_for(task_kwargs, policy_settings(s))) == expected


def test_generated_local_settings_is_python():
    from airscale.observe.policy import render_local_settings

    code = render_local_settings(spec(monitoring={"task_policy": {"notify_retries": True}}))
    compile(code, "airflow_local_settings.py", "exec")
    assert "'notify_retries': True" in code and "None" in code


def test_missing_debian_packages_are_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without the monitoring binaries
    with pytest.raises(AirscaleError) as e:
        write_configs(spec(), Layout(tmp_path / "d"), SECRETS, [])
    assert "prometheus" in e.value.problem and "apt-get install" in e.value.fix
    assert "monitoring.enabled: false" in e.value.fix


@pytest.mark.parametrize("data, exists", [
    pytest.param({}, True, id="scale"),
    pytest.param({"monitoring": {"task_policy": {"enabled": False}}}, False, id="policy-off"),
    pytest.param({"monitoring": {"enabled": False}}, False, id="monitoring-off"),
])
def test_local_settings_follow_the_spec(tmp_path, data, exists):
    layout = Layout(tmp_path)
    write_configs(spec(), layout, SECRETS, [])  # an earlier `up` left one
    write_configs(spec(**data), layout, SECRETS, [])
    assert (tmp_path / "airflow" / "config" / "airflow_local_settings.py").exists() is exists


COMPONENTS = [
    {"name": "scheduler-1", "kind": "scheduler", "queue": None, "autostart": True},
    {"name": "worker-default-1", "kind": "worker", "queue": "default", "autostart": True},
    {"name": "worker-default-2", "kind": "worker", "queue": "default", "autostart": False},
]


@pytest.mark.parametrize("states, ups, running", [
    pytest.param({"scheduler-1": "RUNNING", "worker-default-1": "RUNNING", "worker-default-2": "STOPPED"},
                 {"scheduler-1": 1, "worker-default-1": 1}, 1, id="standby-worker-left-out"),
    pytest.param({"scheduler-1": "FATAL", "worker-default-1": "BACKOFF", "worker-default-2": "EXITED"},
                 {"scheduler-1": 0, "worker-default-1": 0, "worker-default-2": 0}, 0, id="died"),
    pytest.param({"scheduler-1": "STOPPED", "worker-default-1": "STOPPING", "worker-default-2": "STARTING"},
                 {}, 0, id="stopped-on-purpose-or-starting"),
    pytest.param({"scheduler-1": "RUNNING", "worker-default-1": "RUNNING", "worker-default-2": "RUNNING"},
                 {"scheduler-1": 1, "worker-default-1": 1, "worker-default-2": 1}, 2, id="scaled-up"),
])
def test_component_states(states, ups, running):
    from airscale.observe.exporter import component_states

    infos = {n: {"statename": s} for n, s in states.items()}
    got_ups, workers = component_states(COMPONENTS, infos, {"default": {"min_workers": 1, "max_workers": 2}})
    assert {name: v for (name, _), v in got_ups.items()} == ups
    assert workers == {"default": running}


@pytest.mark.parametrize("counts, series", [
    pytest.param({}, [("scheduler-1", "scheduler"), ("worker-default-1", "worker"), ("worker-default-2", "worker")],
                 id="every-component-from-the-start"),
    pytest.param({"prometheus": {"restarts": 1}},
                 [("prometheus", "other"), ("scheduler-1", "scheduler"), ("worker-default-1", "worker"),
                  ("worker-default-2", "worker")], id="restarted-process-outside-the-list"),
])
def test_restart_series(counts, series):
    from airscale.observe.exporter import restart_series

    assert restart_series(COMPONENTS, counts) == series


@pytest.mark.parametrize("url, expected", [
    pytest.param("postgresql+psycopg2://u:p@db:5432/airflow", "postgresql://u:p@db:5432/airflow", id="sqlalchemy-form"),
    pytest.param("postgresql://u:p@db:6543/m?sslmode=disable", "postgresql://u:p@db:6543/m?sslmode=disable",
                 id="libpq-form-kept"),
])
def test_libpq_url(url, expected):
    from airscale.observe.exporter import libpq_url

    assert libpq_url(url) == expected


def test_in_cluster_config_serves_the_spec_ports_without_supervisor():
    from airscale.observe.exporter import in_cluster_config
    from airscale.spec import Ports

    s = spec(cluster={"base_port": 30000}, queues={"default": {}, "etl": {"max_workers": 5}})
    c = in_cluster_config(s, "0.0.0.0")
    assert (c["host"], c["port"], c["statsd_port"]) == ("0.0.0.0", Ports(30000).exporter, Ports(30000).statsd)
    assert set(c["queues"]) == {"default", "etl"} and c["queues"]["etl"]["max_workers"] == 5
    assert "supervisor_socket" not in c
