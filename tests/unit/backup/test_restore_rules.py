"""Where a restore may go and which specs it serves (pure), and what `airscale backup` names."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from airscale.backup.restore import spec_problem, target_problem
from airscale.backup.take import archive_name, archive_pattern, pgpass_line
from airscale.spec import Spec

P = Path("/srv/airscale/restored")


@pytest.mark.parametrize("exists, is_dir, entries, expected", [
    pytest.param(False, False, [], None, id="missing-folder"),
    pytest.param(True, True, [], None, id="empty-folder"),
    pytest.param(True, False, [], "not a folder", id="a-file"),
    pytest.param(True, True, [".airscale-cluster"], "not empty", id="another-clusters-folder"),
    pytest.param(True, True, ["postgres", "secrets.json", "state", "x"], "not empty (postgres, secrets.json, state, ...)",
                 id="a-cluster-with-data"),
    pytest.param(True, True, ["notes.txt"], "not empty (notes.txt)", id="someones-files"),
])
def test_target_problem(exists, is_dir, entries, expected):
    problem = target_problem(P, exists, is_dir, entries)
    assert problem is None if expected is None else expected in problem


@pytest.mark.parametrize("data, expected", [
    pytest.param({}, None, id="embedded-postgres"),
    pytest.param({"cluster": {"profile": "dev"}}, None, id="dev"),
    pytest.param({"database": {"url": "postgresql://a:b@db:5432/airflow"}}, "external database", id="external"),
    pytest.param({"ha": {"database": {"enabled": True}}}, "not supported yet", id="ha-database"),
])
def test_spec_problem(data, expected):
    problem = spec_problem(Spec.model_validate(data))
    assert problem is None if expected is None else expected in problem


def test_archive_names_sort_by_age_and_match_only_their_cluster():
    a = archive_name("prod", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    b = archive_name("prod", datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert a == "airscale-prod-20260102T030405Z.tar" and a < b
    pattern = archive_pattern("prod")
    assert pattern.match(a) and pattern.match(b)
    assert not pattern.match(archive_name("prod-eu", datetime(2026, 1, 1, tzinfo=timezone.utc)))
    assert not pattern.match(a + ".bak") and not pattern.match("." + a + ".123.partial")


def test_pgpass_escapes_separators():
    assert pgpass_line("h", "5432", "db", "u", r"a:b\c") == "h:5432:db:u:a\\:b\\\\c\n"
