"""The plan reaches airflow.cfg and PostgreSQL's airscale.conf, and the spec wins over it."""

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
from airscale.spec import parse_spec
from airscale.tuning.apply import planned_postgres_settings, profile_for

PROFILE = {"tasks_per_day": 50_000, "peak_concurrent_tasks": 8, "typical_task_seconds": 1}


def spec_of(tmp_path: Path, data: dict):
    f = tmp_path / "airscale.yaml"
    f.write_text(yaml.safe_dump(data))
    return parse_spec(f.read_text(), f)


def cfg_of(spec) -> configparser.ConfigParser:
    text = render_airflow_cfg(spec, Layout(Path("/tmp/airscale-unit")), Secrets.generate(), CAPABILITIES)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def get(cfg, section, key):
    return cfg.get(section, key, fallback=None)


@pytest.mark.parametrize(
    "tuning, overrides, section, key, expected",
    [
        pytest.param({"enabled": False}, {}, "scheduler", "scheduler_idle_sleep_time", None, id="off-stock"),
        pytest.param({}, {}, "scheduler", "scheduler_idle_sleep_time", "0.2", id="on-by-default"),
        pytest.param({"enabled": True, "workload": PROFILE}, {}, "scheduler", "scheduler_idle_sleep_time", "0.2",
                     id="plan-applied"),
        pytest.param({"enabled": True, "workload": PROFILE}, {}, "airscale", "supervisor_exit_wakeup", "True",
                     id="plan-airscale-section"),
        # The exit wakeup frees the slot at the task's exit: the heartbeat interval stays stock.
        pytest.param({"enabled": True, "workload": PROFILE}, {}, "workers", "min_heartbeat_interval", None,
                     id="plan-keeps-stock-heartbeat"),
        pytest.param({"enabled": True, "workload": PROFILE},
                     {"scheduler": {"scheduler_idle_sleep_time": 0.5}},
                     "scheduler", "scheduler_idle_sleep_time", "0.5", id="spec-override-wins"),
        pytest.param({"enabled": True, "workload": PROFILE}, {"workers": {"min_heartbeat_interval": 2}},
                     "workers", "min_heartbeat_interval", "2", id="spec-override-of-a-stock-key"),
        pytest.param({"enabled": False, "workload": PROFILE}, {}, "scheduler", "scheduler_idle_sleep_time", None,
                     id="disabled-profile-ignored"),
        pytest.param({"enabled": True, "workload": PROFILE}, {}, "celery", "worker_concurrency", None,
                     id="concurrency-comes-from-queues"),
        pytest.param({"enabled": True, "workload": PROFILE}, {}, "core", "executor", "CeleryExecutor",
                     id="derived-kept"),
    ],
)
def test_airflow_cfg(tmp_path, tuning, overrides, section, key, expected):
    spec = spec_of(tmp_path, {"tuning": tuning, "airflow_config": overrides})
    assert get(cfg_of(spec), section, key) == expected


@pytest.mark.parametrize(
    "data, key, expected",
    [
        pytest.param({"tuning": {"enabled": False}}, "shared_buffers", None, id="off-stock"),
        pytest.param({"tuning": {"enabled": False}}, "max_connections", 200, id="off-spec-default-connections"),
        pytest.param({}, "shared_buffers", "1024MB", id="on-by-default-sized-from-queues"),
        pytest.param({"tuning": {"enabled": True, "workload": PROFILE}}, "shared_buffers", "1024MB", id="plan"),
        pytest.param({"tuning": {"enabled": True, "workload": PROFILE}}, "max_connections", 120, id="plan-connections-2-schedulers"),
        pytest.param({"tuning": {"enabled": True, "workload": PROFILE}, "database": {"max_connections": 300}},
                     "max_connections", 300, id="explicit-connections-win"),
        pytest.param({"tuning": {"enabled": True, "workload": PROFILE, "postgres": {"work_mem": "32MB"}}},
                     "work_mem", "32MB", id="tuning-postgres-wins"),
    ],
)
def test_postgres_settings(tmp_path, data, key, expected):
    assert planned_postgres_settings(spec_of(tmp_path, data)).get(key) == expected


def test_postgres_conf_written(tmp_path):
    from airscale.runtime.postgres import write_config

    spec = spec_of(tmp_path, {"tuning": {"enabled": True, "workload": PROFILE}})
    layout = Layout(tmp_path / "data")
    layout.pgdata.mkdir(parents=True)
    (layout.pgdata / "postgresql.conf").write_text("# stock\n")
    write_config(spec, layout)
    conf = (layout.pgdata / "airscale.conf").read_text()
    assert "shared_buffers = '1024MB'\n" in conf
    assert "max_connections = 120\n" in conf
    assert "autovacuum_vacuum_scale_factor = 0.02\n" in conf


def test_profile_takes_schedulers_and_queues_from_spec(tmp_path):
    spec = spec_of(tmp_path, {
        "schedulers": {"count": 3},
        "queues": {"default": {"max_workers": 3, "concurrency": 8}, "reports": {"max_workers": 1, "concurrency": 8}},
        "tuning": {"enabled": True, "workload": PROFILE},
    })
    p = profile_for(spec)
    assert p.schedulers == 3
    assert p.queues == {"default": 0.75, "reports": 0.25}


def test_profile_file_relative_to_spec(tmp_path):
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({**PROFILE, "dags": 7}))
    spec = spec_of(tmp_path, {"tuning": {"enabled": True, "workload_file": "w.yaml"}})
    assert profile_for(spec).dags == 7


@pytest.mark.parametrize(
    "tuning, words",
    [
        pytest.param({"workload": PROFILE, "workload_file": "w.yaml"}, "not both", id="two-sources"),
        pytest.param({"workload": {"tasks_per_day": 0}}, "tuning.workload.tasks_per_day", id="inline-bad-field"),
        pytest.param({"enabled": "maybe"}, "tuning.enabled", id="bad-flag"),
    ],
)
def test_bad_tuning_section(tmp_path, tuning, words):
    with pytest.raises(AirscaleError, match=words.replace(".", r"\.")):
        spec_of(tmp_path, {"tuning": tuning})


def test_queue_names_must_match(tmp_path):
    spec = spec_of(tmp_path, {"tuning": {"enabled": True, "workload": {**PROFILE, "queues": {"other": 1}}}})
    with pytest.raises(AirscaleError, match="tuning.workload.queues"):
        profile_for(spec)


def test_missing_workload_file(tmp_path):
    # Refused when the spec is loaded, not when a cluster comes up.
    with pytest.raises(AirscaleError, match=r"tuning\.workload_file: .*nope\.yaml does not exist"):
        spec_of(tmp_path, {"tuning": {"enabled": True, "workload_file": "nope.yaml"}})
