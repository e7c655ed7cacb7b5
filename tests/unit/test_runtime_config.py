"""What the runtime derives from the spec: Airflow config, components, supervisord config."""

import configparser
import json
from pathlib import Path

import pytest

from airscale.assembly import CAPABILITIES
from airscale.runtime.airflow_config import merged_settings, render_airflow_cfg
from airscale.runtime.components import components
from airscale.runtime.layout import Layout
from airscale.runtime.redis import render_redis_conf
from airscale.runtime.secrets import Secrets
from airscale.runtime.supervisor import render_supervisord_conf
from airscale.spec import Spec

SECRETS = Secrets.generate()
LAYOUT = Layout(Path("/srv/airscale/test"))
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def spec(**data) -> Spec:
    return Spec.model_validate(data).model_copy(update={"base_dir": Path("/srv/spec")})


def cfg(s: Spec) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(render_airflow_cfg(s, LAYOUT, SECRETS, CAPABILITIES))
    return cp


@pytest.mark.parametrize(
    "data, section, key, expected",
    [
        pytest.param({}, "core", "executor", "CeleryExecutor", id="scale-is-celery"),
        pytest.param({"cluster": {"profile": "dev"}}, "core", "executor", "LocalExecutor", id="dev-is-local"),
        pytest.param({"cluster": {"base_port": 30000}}, "core", "execution_api_server_url",
                     "http://127.0.0.1:30000/execution/", id="execution-api-url-from-port"),
        pytest.param({"cluster": {"base_port": 30000}}, "api", "port", "30000", id="api-port"),
        pytest.param({}, "api", "host", "127.0.0.1", id="loopback-by-default"),
        pytest.param({"cluster": {"listen_host": "0.0.0.0"}}, "core", "execution_api_server_url",
                     "http://127.0.0.1:28080/execution/", id="clients-use-loopback-when-listening-on-all"),
        pytest.param({"cluster": {"base_port": 30000}}, "celery", "broker_url",
                     f"redis://:{SECRETS.redis_password}@127.0.0.1:30002/0", id="embedded-broker"),
        pytest.param({"broker": {"url": "redis://:pw@10.0.0.5:6379/1"}}, "celery", "broker_url",
                     "redis://:pw@10.0.0.5:6379/1", id="external-broker"),
        pytest.param({"cluster": {"base_port": 30000}}, "celery", "result_backend",
                     f"redis://:{SECRETS.redis_password}@127.0.0.1:30002/0", id="results-in-redis-by-default"),
        pytest.param({"broker": {"result_backend": "database"}, "database": {"url": "postgresql+psycopg2://u:p@db/af"}},
                     "celery", "result_backend", "db+postgresql://u:p@db/af", id="results-in-database"),
        pytest.param({}, "airscale", "worker_dag_cache_seconds", "300", id="plan-turns-on-worker-dag-cache"),
        pytest.param({}, "airscale", "dag_folder_watch", "True", id="plan-watches-the-dag-folder"),
        pytest.param({}, "dag_processor", "refresh_interval", "600", id="watched-folder-listed-rarely"),
        pytest.param({"tuning": {"enabled": False}}, "dag_processor", "refresh_interval", "30",
                     id="stock-lists-new-files-every-30s"),
        pytest.param({"tuning": {"workload": {"typical_task_seconds": 1}}}, "airscale", "scheduler_busy_sleep",
                     "0.02", id="plan-paces-short-tasks"),
        pytest.param({"database": {"url": "postgresql+psycopg2://u:p@db:5432/af"}}, "database",
                     "sql_alchemy_conn", "postgresql+psycopg2://u:p@db:5432/af", id="external-db"),
        pytest.param({"dags_folder": "dags"}, "core", "dags_folder", "/srv/spec/dags", id="dags-relative-to-spec"),
        pytest.param({"queues": {"etl": {}, "ml": {}}}, "operators", "default_queue", "etl", id="first-queue-is-default"),
        pytest.param({"airflow_config": {"scheduler": {"parsing_processes": 4}}}, "scheduler",
                     "parsing_processes", "4", id="override-adds"),
        pytest.param({"airflow_config": {"core": {"executor": "LocalExecutor"}}}, "core", "executor",
                     "LocalExecutor", id="override-wins"),
    ],
)
def test_airflow_settings(data, section, key, expected):
    assert cfg(spec(**data))[section][key] == expected


def test_redis_results_are_stored_with_retries():
    extra = json.loads(cfg(spec())["celery"]["extra_celery_config"])
    assert extra["result_backend_always_retry"] is True
    assert extra["result_expires"] == 900  # not Celery's day: Redis does not grow with a day's results
    slow = json.loads(cfg(spec(ha={"orphan_check_interval": 300}))["celery"]["extra_celery_config"])
    assert slow["result_expires"] == 3000
    assert "extra_celery_config" not in cfg(spec(broker={"result_backend": "database"}))["celery"]


def test_airflow_components_run_through_the_accelerated_cli():
    by_kind = {c.kind: c.command for c in components(spec(), LAYOUT, PG_BIN, CAPABILITIES)}
    assert by_kind["scheduler"][1:3] == ("-m", "airscale.runtime.airflow_entry")
    # Forked from the fork server when it can (warm start), through the same entry point.
    fork_run = ("-m", "airscale.runtime.forkserver", "run", "--socket", str(LAYOUT.forkserver_socket), "--")
    assert by_kind["worker"][1:7] == fork_run
    assert by_kind["worker"][7:11] == ("-m", "airscale.runtime.airflow_entry", "celery", "worker")
    assert by_kind["worker-forkserver"][1:4] == ("-m", "airscale.runtime.forkserver", "serve")
    # Named through the environment: Airflow's 1 s duplicate-name broadcast is skipped.
    worker = next(c for c in components(spec(), LAYOUT, PG_BIN, CAPABILITIES) if c.kind == "worker")
    assert "--celery-hostname" not in worker.command
    assert worker.env["AIRSCALE_CELERY_HOSTNAME"] == f"{worker.name}@%h"
    # The api-server too: its Execution API is built at start (airscale.runtime.api_warmup).
    assert by_kind["api-server"][1:4] == ("-m", "airscale.runtime.airflow_entry", "api-server")
    assert by_kind["triggerer"][0].endswith("/airflow")


def test_warm_start_off_starts_workers_cold():
    comps = components(spec(workers={"warm_start": False}), LAYOUT, PG_BIN, CAPABILITIES)
    assert "worker-forkserver" not in {c.kind for c in comps}
    worker = next(c for c in comps if c.kind == "worker")
    assert worker.command[1:5] == ("-m", "airscale.runtime.airflow_entry", "celery", "worker")
    dev = components(spec(cluster={"profile": "dev"}), LAYOUT, PG_BIN, CAPABILITIES)
    assert not {"worker", "worker-forkserver"} & {c.kind for c in dev}


def test_shared_secrets_are_in_the_config():
    c = cfg(spec())
    assert c["api"]["secret_key"] == SECRETS.api_secret_key
    assert c["api_auth"]["jwt_secret"] == SECRETS.jwt_secret
    assert len(SECRETS.jwt_secret) >= 64
    assert c["core"]["fernet_key"] == SECRETS.fernet_key


def test_percent_signs_survive_airflow_interpolation():
    s = spec(airflow_config={"core": {"x": "50%"}})
    assert "50%%" in render_airflow_cfg(s, LAYOUT, SECRETS, CAPABILITIES)


def test_dev_profile_has_no_celery_section():
    assert "celery" not in merged_settings(spec(cluster={"profile": "dev"}), LAYOUT, SECRETS, CAPABILITIES)


# The monitoring stack (airscale.observe), on by default in the scale profile, starts with the api-server.
# The scale profile's two api-servers behind HAProxy (airscale.runtime.api_servers).
API = ["api-server-1", "api-server-2", "api-proxy"]
MONITORING = ["prometheus", "alertmanager", "postgres-exporter", "redis-exporter", "exporter", "alert-receiver"]


def names(s: Spec, pg_bin=PG_BIN):
    return [c.name for c in components(s, LAYOUT, pg_bin, CAPABILITIES)]


@pytest.mark.parametrize(
    "data, expected",
    [
        pytest.param({}, ["postgres", "redis", *API, *MONITORING, "scheduler-1", "scheduler-2",
                          "dag-processor", "triggerer", "worker-forkserver", "worker-default-1", "worker-default-2"],
                     id="default"),
        pytest.param({"cluster": {"profile": "dev"}, "schedulers": {"count": 1}},
                     ["postgres", "api-server", "scheduler-1", "dag-processor", "triggerer"], id="dev"),
        pytest.param({"database": {"url": "postgresql://u:p@h/db"}, "broker": {"url": "redis://h"},
                      "schedulers": {"count": 1}, "queues": {"etl": {"min_workers": 0, "max_workers": 1}}},
                     [*API, *MONITORING, "scheduler-1", "dag-processor", "triggerer", "worker-forkserver",
                      "worker-etl-1"],
                     id="external"),
        pytest.param({"api_server": {"count": 1}}, ["postgres", "redis", "api-server", *MONITORING, "scheduler-1",
                                                    "scheduler-2", "dag-processor", "triggerer", "worker-forkserver",
                                                    "worker-default-1", "worker-default-2"], id="one-api-server"),
        pytest.param({"cluster": {"profile": "dev"}, "schedulers": {"count": 1}, "api_server": {"count": 3}},
                     ["postgres", "api-server-1", "api-server-2", "api-server-3", "api-proxy", "scheduler-1",
                      "dag-processor", "triggerer"], id="dev-three-api-servers"),
    ],
)
def test_components(data, expected):
    assert names(spec(**data)) == expected


def test_stages_put_dependencies_first():
    comps = {c.name: c for c in components(spec(), LAYOUT, PG_BIN, CAPABILITIES)}
    order = ["postgres", "redis", "api-server-1", "scheduler-1", "dag-processor", "worker-default-1"]
    stages = [comps[n].stage for n in order]
    assert stages == sorted(stages) and len(set(stages)) == len(stages)
    # The fork server is up before the first worker asks it for a fork.
    assert comps["worker-forkserver"].stage < comps["worker-default-1"].stage


def test_workers_above_min_are_standby():
    s = spec(queues={"etl": {"min_workers": 1, "max_workers": 3, "concurrency": 4}})
    workers = [c for c in components(s, LAYOUT, PG_BIN, CAPABILITIES) if c.kind == "worker"]
    assert [w.autostart for w in workers] == [True, False, False]
    cmd = workers[0].command
    assert cmd[cmd.index("--queues") + 1] == "etl"
    assert cmd[cmd.index("--concurrency") + 1] == "4"
    assert "--skip-serve-logs" in cmd
    assert workers[0].stopwaitsecs == s.workers.drain_timeout


def test_supervisord_conf_has_no_secret_and_escapes_percent():
    comps = components(spec(), LAYOUT, PG_BIN, CAPABILITIES)
    text = render_supervisord_conf(LAYOUT, comps, "test-123")
    for value in SECRETS.values():
        assert value not in text
    cp = configparser.RawConfigParser()
    cp.read_string(text)
    worker = cp["program:worker-default-1"]
    assert 'AIRSCALE_CELERY_HOSTNAME="worker-default-1@%%h"' in worker["environment"]
    assert 'AIRSCALE_HOSTNAME="worker-default-1.' in worker["environment"]
    assert cp["unix_http_server"]["chmod"] == "0700"
    assert 'AIRSCALE_CLUSTER_ID="test-123"' in cp["supervisord"]["environment"]


def test_commands_carry_no_secret():
    for c in components(spec(), LAYOUT, PG_BIN, CAPABILITIES):
        for value in SECRETS.values():
            assert value not in " ".join(c.command)


def test_redis_conf_persists_and_binds_loopback():
    text = render_redis_conf(spec(cluster={"base_port": 30000}), LAYOUT, SECRETS)
    assert "bind 127.0.0.1" in text and "port 30002" in text
    assert "appendonly yes" in text
    assert f"requirepass {SECRETS.redis_password}" in text


@pytest.mark.parametrize(
    "states, expected",
    [
        pytest.param({}, ["worker-etl-1", "worker-etl-2"], id="fresh-cluster-starts-min"),
        pytest.param({"worker-etl-1": "RUNNING", "worker-etl-2": "RUNNING", "worker-etl-3": "RUNNING"},
                     ["worker-etl-1", "worker-etl-2", "worker-etl-3"], id="keeps-autoscaled-workers"),
        pytest.param({"worker-etl-3": "RUNNING", "worker-etl-2": "RUNNING"},
                     ["worker-etl-2", "worker-etl-3"], id="drained-worker-1-stays-stopped"),
        pytest.param({"worker-etl-3": "RUNNING"}, ["worker-etl-3", "worker-etl-1"], id="tops-up-to-min"),
    ],
)
def test_up_keeps_min_workers_without_undoing_the_autoscaler(states, expected):
    from airscale.runtime.cluster import group_workers, workers_to_run

    s = spec(queues={"etl": {"min_workers": 2, "max_workers": 4}})
    comps = components(s, LAYOUT, PG_BIN, CAPABILITIES)
    stage = next(c.stage for c in comps if c.kind == "worker")
    infos = {n: {"statename": st} for n, st in states.items()}
    assert [w.name for w in workers_to_run(group_workers(comps, stage), infos)] == expected
