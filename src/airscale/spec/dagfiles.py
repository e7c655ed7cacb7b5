"""Which files of the spec's `dags_folder` airscale takes for DAG files (pure).

airscale reads the DAG folder in two places: the planner sizes the dag-processor from how many
DAG files it holds (airscale.tuning.apply), and the dag-processor's folder watch decides which
changes are edits of DAG files (airscale.runtime.dag_watch). Both apply this one rule, in the
spec layer both stand on, so the files the plan counts are the files the watch follows.

A DAG file is a `.py` file or a `.zip` archive. Skipped: hidden files and folders (`.git`,
`.venv`, an editor's `.#etl.py` lock) and `__pycache__`, whose Python files are no one's DAGs.
`.airflowignore` is not read here: what it leaves out stays Airflow's to list.
"""

from __future__ import annotations

from pathlib import PurePath

DAG_SUFFIXES = (".py", ".zip")
CACHE_FOLDER = "__pycache__"


def skipped(name: str) -> bool:
    """A file or folder name that is never a DAG file nor holds one: hidden, or `__pycache__`."""
    return name.startswith(".") or name == CACHE_FOLDER


def skipped_path(rel: PurePath) -> bool:
    """`rel` (relative to the DAG folder) is skipped, or lies below a skipped folder."""
    return any(skipped(part) for part in rel.parts)


def dag_file_name(name: str) -> bool:
    """A file name a DAG file may have (a walk that skips folders itself tests only the name)."""
    return name.endswith(DAG_SUFFIXES) and not skipped(name)


def is_dag_file(rel: PurePath) -> bool:
    """`rel`, a path relative to the DAG folder, is a DAG file."""
    return dag_file_name(rel.name) and not skipped_path(rel)
