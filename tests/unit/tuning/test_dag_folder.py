"""The DAG folder a plan is sized for when the spec declares no workload profile."""

from __future__ import annotations

import pytest

from airscale.spec import Spec
from airscale.tuning.apply import count_dag_files, dag_count_step, plan_for, profile_for


@pytest.mark.parametrize(
    "files,step",
    [(0, 50), (1, 50), (50, 50), (51, 100), (999, 1000), (1000, 1000), (1001, 2000), (10**7, 100_000)],
)
def test_dag_count_step(files, step):
    assert dag_count_step(files) == step


def test_count_dag_files_skips_hidden_and_cache_folders_and_other_files(tmp_path):
    for rel in ["a.py", "b.zip", "team/c.py", "team/deep/d.py", "notes.md", ".git/e.py",
                "__pycache__/f.py", "team/.hidden/g.py"]:
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
