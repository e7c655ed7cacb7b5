"""The recovery settings airscale derives from `ha`, and the spec's guards on them."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

from airscale.assembly import CAPABILITIES
from airscale.errors import AirscaleError
from airscale.runtime.airflow_config import render_airflow_cfg
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec, parse_spec

SECRETS = Secrets.generate()
LAYOUT = Layout(Path("/srv/airscale/test"))


def cfg(**data) -> configparser.ConfigParser:
    s = Spec.model_validate(data)
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(render_airflow_cfg(s, LAYOUT, SECRETS, CAPABILITIES))
    return cp


@pytest.mark.parametrize(
    "data, section, key, expected",
    [
        pytest.param({}, "celery", "task_acks_late", "True", id="acks-late"),
        pytest.param({}, "celery", "worker_prefetch_multiplier", "1", id="prefetch-one"),
        pytest.param({}, "celery_broker_transport_options", "visibility_timeout", "21600", id="visibility-default"),
        pytest.param({"ha": {"visibility_timeout": 90000}}, "celery_broker_transport_options",
                     "visibility_timeout", "90000", id="visibility-from-spec"),
        pytest.param({}, "celery_broker_transport_options", "unacked_restore_throttle", "1", id="restore-throttle"),
        pytest.param({}, "scheduler", "task_instance_heartbeat_timeout", "90", id="heartbeat-timeout"),
        pytest.param({"ha": {"task_heartbeat_timeout": 120}}, "scheduler", "task_instance_heartbeat_timeout",
                     "120", id="heartbeat-timeout-from-spec"),
        pytest.param({}, "scheduler", "scheduler_health_check_threshold", "30", id="health-threshold"),
        pytest.param({}, "scheduler", "orphaned_tasks_check_interval", "30.0", id="orphan-check"),
        pytest.param({}, "core", "default_task_retries", "2", id="retries"),
        pytest.param({"ha": {"task_retries": 0}}, "core", "default_task_retries", "0", id="retries-off"),
        pytest.param({}, "core", "default_task_retry_delay", "5", id="retry-delay"),
        pytest.param({}, "workers", "max_failed_heartbeats", "9", id="survive-api-restart"),
        pytest.param({"airflow_config": {"scheduler": {"task_instance_heartbeat_timeout": 200}}}, "scheduler",
                     "task_instance_heartbeat_timeout", "200", id="airflow-config-wins"),
    ],
)
def test_recovery_settings(data, section, key, expected):
    assert cfg(**data)[section][key] == expected


def test_dev_profile_has_no_celery_recovery():
    cp = cfg(cluster={"profile": "dev"})
    assert not cp.has_section("celery_broker_transport_options")
    assert cp["core"]["default_task_retries"] == "2"


@pytest.mark.parametrize(
    "ha, field",
    [
        pytest.param({"visibility_timeout": 60, "task_heartbeat_timeout": 60}, "visibility_timeout",
                     id="visibility-not-above-heartbeat"),
        pytest.param({"task_heartbeat_timeout": 5}, "ha.task_heartbeat_timeout", id="heartbeat-too-low"),
        pytest.param({"database": {"ttl": 20, "loop_wait": 7}}, "ttl", id="patroni-ttl-too-short"),
        pytest.param({"bogus": 1}, "ha.bogus", id="unknown-field"),
    ],
)
def test_bad_ha_fields_are_named(ha, field):
    with pytest.raises(AirscaleError) as e:
        parse_spec(yaml.safe_dump({"ha": ha}), Path("airscale.yaml"))
    assert field in str(e.value.problem) + str(e.value.fix)
