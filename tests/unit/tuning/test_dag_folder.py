"""The DAG folder a plan is sized for when the spec declares no workload profile."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from airscale.spec import Spec
from airscale.tuning import apply
from airscale.tuning.apply import count_dag_files, dag_count_step, plan_for, profile_for


@pytest.mark.parametrize(
    "files,step",
    [(0, 50), (1, 50), (50, 50), (51, 100), (999, 1000), (1000, 1000), (1001, 2000), (10**7, 100_000)],
)
def test_dag_count_step(files, step):
    assert dag_count_step(files) == step


def test_count_dag_files_skips_hidden_files_and_folders_pycache_and_other_files(tmp_path):
    for rel in ["a.py", "b.zip", "team/c.py", "team/deep/d.py", "notes.md", ".git/e.py",
                "__pycache__/f.py", "team/.hidden/g.py", "team/.h.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert count_dag_files(tmp_path) == 4
    assert count_dag_files(tmp_path, limit=2) == 2
    assert count_dag_files(tmp_path / "missing") == 0


def _spec(tmp_path, **extra):
    (tmp_path / "dags").mkdir(exist_ok=True)
    return Spec.model_validate({"dags_folder": str(tmp_path / "dags"), **extra})


def test_no_profile_sizes_the_parse_from_the_folder_and_replans_past_a_step(tmp_path):
    spec = _spec(tmp_path)
    assert profile_for(spec).dags == 50
    interval = plan_for(spec).airflow_settings()["dag_processor"]["min_file_process_interval"]
    for i in range(120):
        (tmp_path / "dags" / f"d{i}.py").write_text("")
    assert profile_for(spec).dags == 200
    bigger = plan_for(spec).airflow_settings()["dag_processor"]["min_file_process_interval"]
    assert bigger > interval


def test_a_declared_profile_wins_over_the_folder(tmp_path):
    spec = _spec(tmp_path, tuning={"workload": {"dags": 700}})
    for i in range(3):
        (tmp_path / "dags" / f"d{i}.py").write_text("")
    assert profile_for(spec).dags == 700


def _interval(p) -> float:
    return p.airflow_settings()["dag_processor"]["min_file_process_interval"]


@pytest.fixture
def walks(monkeypatch):
    """The folders the planner walks, in order (the real count, recorded)."""
    seen: list = []
    real = apply.count_dag_files
    monkeypatch.setattr(apply, "count_dag_files", lambda folder: seen.append(folder) or real(folder))
    return seen


def test_within_counted_once_each_folder_is_walked_once_for_the_same_plan(tmp_path, walks):
    spec = _spec(tmp_path)
    (tmp_path / "other").mkdir()
    other = Spec.model_validate({"dags_folder": str(tmp_path / "other")})
    outside = _interval(plan_for(spec))
    walks.clear()
    with apply.counted_once():
        assert _interval(plan_for(spec)) == outside and profile_for(spec).dags == 50
        for i in range(120):
            (tmp_path / "dags" / f"d{i}.py").write_text("")
        with apply.counted_once():  # an inner block shares the count
            assert _interval(plan_for(spec)) == outside and profile_for(spec).dags == 50
        plan_for(other)
    assert walks == [spec.dags_path, other.dags_path]
    # After the block every plan counts again.
    assert profile_for(spec).dags == 200 and _interval(plan_for(spec)) > outside
    assert walks == [spec.dags_path, other.dags_path, spec.dags_path, spec.dags_path]


def test_a_command_counts_the_folder_within_its_own_scope(tmp_path, monkeypatch):
    """The CLI holds `counted_once` around each command, and only around it: the next command
    counts the folder again."""
    from airscale import cli

    (tmp_path / "dags").mkdir()
    path = tmp_path / "airscale.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"name": "count", "data_dir": str(tmp_path / "data")},
                                    "tuning": {"enabled": True}}))
    scoped: list[bool] = []
    real = apply.count_dag_files
    monkeypatch.setattr(apply, "count_dag_files",
                        lambda folder: scoped.append(apply._COUNTED is not None) or real(folder))

    def planned_interval() -> float:
        result = CliRunner().invoke(cli.app, ["plan", "-s", str(path), "--json"])
        assert result.exit_code == 0, result.output
        return next(s["value"] for s in json.loads(result.stdout)["airflow"] if s["key"] == "min_file_process_interval")

    few = planned_interval()
    for i in range(120):
        (tmp_path / "dags" / f"d{i}.py").write_text("")
    assert planned_interval() > few
    assert scoped == [True, True] and apply._COUNTED is None
