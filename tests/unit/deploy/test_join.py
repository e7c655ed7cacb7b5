"""The joining worker's plan (pure): same settings as the cluster, pointed at the cluster host."""

from __future__ import annotations

import configparser
import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from airscale.deploy import join
from airscale.errors import AirscaleError
from airscale.runtime.secrets import Secrets
from airscale.spec import Ports, parse_spec

SPEC = """
cluster: {name: multi, listen_host: 0.0.0.0, base_port: 29700}
queues:
  default: {min_workers: 1, max_workers: 2, concurrency: 8}
  remote: {min_workers: 0, max_workers: 1, concurrency: 3}
"""


def spec(text: str = SPEC):
    return parse_spec(text, Path("/tmp/airscale-join-unit/airscale.yaml"))


@pytest.fixture
def planned():
    secrets = Secrets.generate()
    p = join.plan(spec(), secrets, "remote", "192.0.2.10", Path("/tmp/airscale-join-unit/w"), "192.0.2.20")
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read_string(p.airflow_cfg)
    return p, cfg, secrets


def test_every_client_address_points_at_the_cluster_host(planned) -> None:
    p, cfg, secrets = planned
    ports = Ports(29700)
    assert cfg["database"]["sql_alchemy_conn"].endswith(f"@192.0.2.10:{ports.postgres}/airflow")
    assert cfg["celery"]["broker_url"].endswith(f"@192.0.2.10:{ports.redis}/0")
    assert cfg["core"]["execution_api_server_url"] == f"http://192.0.2.10:{ports.api}/execution/"
    # Same secrets as the cluster: Airflow 3 components that disagree reject each other's tokens.
    assert cfg["core"]["fernet_key"] == secrets.fernet_key
    assert cfg["api_auth"]["jwt_secret"] == secrets.jwt_secret
    assert cfg["api"]["secret_key"] == secrets.api_secret_key
    assert "simple_auth_manager_passwords_file" not in cfg["core"]
    assert cfg["logging"]["base_log_folder"] == "/tmp/airscale-join-unit/w/logs/tasks"


def test_the_schedulers_listen_address_stays_on_the_cluster() -> None:
    """With PgBouncer the cluster's airflow.cfg names the database itself for the schedulers'
    LISTEN connection; a joining worker has no use for it."""
    from airscale.runtime.airflow_config import merged_settings
    from airscale.runtime.layout import Layout

    pooled = spec(SPEC + "database: {pgbouncer: true}\n")
    secrets = Secrets.generate()
    cluster_cfg = merged_settings(pooled, Layout(Path("/tmp/airscale-join-unit/c")), secrets, ())
    assert cluster_cfg["airscale"]["scheduler_listen_url"].endswith(f":{Ports(29700).postgres}/airflow")
    p = join.plan(pooled, secrets, "remote", "192.0.2.10", Path("/tmp/airscale-join-unit/w"), "192.0.2.20")
    assert "scheduler_listen_url" not in p.airflow_cfg


def test_worker_command_serves_logs_and_consumes_one_queue(planned) -> None:
    p, _, _ = planned
    cmd = list(p.command)
    assert cmd[cmd.index("--queues") + 1] == "remote"
    assert cmd[cmd.index("--concurrency") + 1] == "3"
    assert "--skip-serve-logs" not in cmd, "the api-server fetches a remote worker's logs from it"
    assert p.env["AIRSCALE_HOSTNAME"] == "192.0.2.20"
    assert p.env["AIRFLOW_CONFIG"] == "/tmp/airscale-join-unit/w/airflow/airflow.cfg"


@pytest.mark.parametrize(
    "text,queue,host,message",
    [
        pytest.param(SPEC, "nightly", "192.0.2.10", "queue 'nightly' is not in the spec", id="unknown-queue"),
        pytest.param("cluster: {listen_host: 127.0.0.1}", "default", "192.0.2.10",
                     "cluster.listen_host is 127.0.0.1", id="loopback-cluster"),
        pytest.param(SPEC, "default", "127.0.0.1", "--cluster-host 127.0.0.1 is a loopback", id="loopback-target"),
        pytest.param("cluster: {profile: dev, listen_host: 0.0.0.0}", "default", "192.0.2.10",
                     "no broker", id="dev-profile"),
    ],
)
def test_join_refuses_what_cannot_work(text: str, queue: str, host: str, message: str) -> None:
    with pytest.raises(AirscaleError) as e:
        join.check_joinable(spec(text), queue, host)
    assert message in e.value.problem and e.value.fix


@pytest.mark.parametrize(
    "mode,content,message",
    [
        pytest.param(0o644, "valid", "readable by other users", id="world-readable"),
        pytest.param(0o600, "{not json", "cannot read the secrets file", id="not-json"),
        pytest.param(0o600, '{"foo": 1}', "not an airscale secrets file", id="wrong-keys"),
    ],
)
def test_secrets_file_problems_name_the_fix(tmp_path: Path, mode: int, content: str, message: str) -> None:
    f = tmp_path / "secrets.json"
    f.write_text(json.dumps(asdict(Secrets.generate())) if content == "valid" else content)
    os.chmod(f, mode)
    with pytest.raises(AirscaleError) as e:
        join.load_secrets(f)
    assert message in e.value.problem


def test_missing_secrets_file(tmp_path: Path) -> None:
    with pytest.raises(AirscaleError, match="secrets file not found"):
        join.load_secrets(tmp_path / "nope.json")
