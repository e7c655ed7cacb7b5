"""Which files of the DAG folder are DAG files (airscale.spec.dagfiles): the one rule the
planner counts by and the dag-processor's folder watch follows."""

from __future__ import annotations

from pathlib import PurePath

import pytest

from airscale.spec.dagfiles import dag_file_name, is_dag_file, skipped, skipped_path


@pytest.mark.parametrize(
    "rel,dag",
    [
        pytest.param("etl.py", True, id="python-file"),
        pytest.param("pack.zip", True, id="zip-archive"),
        pytest.param("team/a/etl.py", True, id="in-subfolders"),
        pytest.param("my.dags/etl.py", True, id="dot-inside-a-folder-name"),
        pytest.param("notes.md", False, id="other-suffix"),
        pytest.param("etl.pyc", False, id="compiled"),
        pytest.param("etl.py.tmp", False, id="editor-temporary"),
        pytest.param("etl.PY", False, id="suffix-is-case-sensitive"),
        pytest.param("team", False, id="folder-name"),
        pytest.param(".hidden.py", False, id="hidden-file"),
        pytest.param(".#etl.py", False, id="editor-lock"),
        pytest.param(".airflowignore", False, id="ignore-file"),
        pytest.param(".git/hooks/post.py", False, id="in-hidden-folder"),
        pytest.param("team/.venv/lib/x.py", False, id="in-nested-hidden-folder"),
        pytest.param("__pycache__/etl.py", False, id="in-pycache"),
        pytest.param("team/__pycache__/etl.py", False, id="in-nested-pycache"),
    ],
)
def test_is_dag_file(rel, dag):
    assert is_dag_file(PurePath(rel)) is dag
    if "/" not in rel:  # a walk that skips folders itself tests the name alone: the same answer
        assert dag_file_name(rel) is dag


@pytest.mark.parametrize(
    "rel,skip",
    [
        pytest.param("team", False, id="folder"),
        pytest.param("team/notes.md", False, id="other-file"),
        pytest.param(".git", True, id="hidden-folder"),
        pytest.param("__pycache__", True, id="pycache"),
        pytest.param(".git/objects/ab", True, id="below-hidden-folder"),
        pytest.param("team/__pycache__/x.cpython-311.pyc", True, id="below-pycache"),
        pytest.param(".etl.py.swp", True, id="hidden-file"),
        pytest.param(".", False, id="the-folder-itself"),
    ],
)
def test_skipped_path(rel, skip):
    assert skipped_path(PurePath(rel)) is skip


@pytest.mark.parametrize(
    "name,skip",
    [(".git", True), (".venv", True), ("__pycache__", True), (".#etl.py", True),
     ("team", False), ("etl.py", False), ("pycache", False), ("a.b", False)],
)
def test_skipped(name, skip):
    assert skipped(name) is skip
