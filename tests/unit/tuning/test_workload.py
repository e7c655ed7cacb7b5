"""Invalid workload profiles give an AirscaleError that names the field."""

from __future__ import annotations

import re

import pytest

from airscale.errors import AirscaleError
from airscale.spec.workload import load_profile, parse_profile


@pytest.mark.parametrize(
    "data, field",
    [
        pytest.param({"tasks_per_day": -5}, "tasks_per_day", id="negative-tasks"),
        pytest.param({"peak_concurrent_tasks": "many"}, "peak_concurrent_tasks", id="not-a-number"),
        pytest.param({"typical_task_seconds": 0}, "typical_task_seconds", id="zero-duration"),
        pytest.param({"burstiness": 0.5}, "burstiness", id="burstiness-below-1"),
        pytest.param({"latency_goal_seconds": 0.001}, "latency_goal_seconds", id="impossible-latency"),
        pytest.param({"tasks_per_day": 1_000_000, "typical_task_seconds": 60, "peak_concurrent_tasks": 10},
                     "peak_concurrent_tasks", id="peak-below-average"),
        pytest.param({"queues": {"default": 0}}, "queues", id="zero-share"),
        pytest.param({"queues": {"Bad Name": 1}}, "queues", id="bad-queue-name"),
        pytest.param({"queues": {}}, "queues", id="no-queue"),
        pytest.param({"worker_machine": {"cores": 0}}, "worker_machine.cores", id="zero-cores"),
        pytest.param({"taks_per_day": 5}, "taks_per_day", id="typo-is-unknown-field"),
    ],
)
def test_invalid_profile_names_field(data, field):
    with pytest.raises(AirscaleError) as e:
        parse_profile(data, "w.yaml")
    assert re.search(rf"^\s+{re.escape(field)}[.:]", e.value.problem, re.M), e.value.problem
    assert "w.yaml" in e.value.problem
    assert e.value.fix


@pytest.mark.parametrize(
    "text, words",
    [
        pytest.param("- 1\n- 2\n", "must be a mapping", id="list"),
        pytest.param("tasks_per_day: [1\n", "invalid YAML", id="bad-yaml"),
    ],
)
def test_bad_files(tmp_path, text, words):
    f = tmp_path / "w.yaml"
    f.write_text(text)
    with pytest.raises(AirscaleError, match=words):
        load_profile(f)


def test_missing_file(tmp_path):
    with pytest.raises(AirscaleError, match="not found"):
        load_profile(tmp_path / "nope.yaml")


def test_shares_normalised():
    p = parse_profile({"queues": {"a": 3, "b": 1}, "peak_concurrent_tasks": 32}, "x")
    assert p.queues == {"a": 0.75, "b": 0.25}


def test_example_profile_loads():
    from pathlib import Path

    p = load_profile(Path(__file__).parents[3] / "examples" / "workload.yaml")
    assert p.dags == 500
