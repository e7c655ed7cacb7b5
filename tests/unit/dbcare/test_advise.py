"""Advice on the metadata database from catalog rows (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airscale.dbcare.advise import HOT_INDEXES, TableStats, advise, covered
from airscale.dbcare.clean import clean_command, cutoff, history_tables

ALL_PRESENT = {
    "task_reschedule": [("id",), ("ti_id", "id")],
    "task_instance": [("id",), ("dag_version_id",), ("dag_id", "state")],
    "dag_run": [("id",), ("created_dag_version_id",)],
}


@pytest.mark.parametrize(
    "wanted, indexes, expected",
    [
        pytest.param(("ti_id",), [("ti_id", "id")], True, id="leading-column"),
        pytest.param(("ti_id",), [("id", "ti_id")], False, id="not-leading"),
        pytest.param(("ti_id",), [], False, id="no-index"),
        pytest.param(("a", "b"), [("a",)], False, id="shorter-index"),
    ],
)
def test_covered(wanted, indexes, expected):
    assert covered(wanted, indexes) is expected


@pytest.mark.parametrize(
    "drop_table, drop_cols",
    [
        pytest.param("task_reschedule", ("ti_id", "id"), id="task-reschedule-ti-id-60895"),
        pytest.param("task_instance", ("dag_version_id",), id="ti-dag-version-61894"),
        pytest.param("dag_run", ("created_dag_version_id",), id="dag-run-created-version"),
    ],
)
def test_missing_hot_index_found(drop_table, drop_cols):
    indexes = {t: [c for c in cols if not (t == drop_table and c == drop_cols)] for t, cols in ALL_PRESENT.items()}
    advice = advise(indexes, [], 30)
    missing = [a for a in advice if a.kind == "missing-index"]
    assert [a.table for a in missing] == [drop_table]
    assert missing[0].action.startswith("CREATE INDEX CONCURRENTLY")


def test_all_present_is_ok():
    advice = advise(ALL_PRESENT, [], 30)
    assert {a.kind for a in advice} == {"ok"}
    assert len(advice) == len(HOT_INDEXES)


def test_table_of_other_schema_version_skipped():
    assert advise({"task_instance": [("dag_version_id",)]}, [], 30)[0].kind == "ok"
    assert len(advise({"task_instance": [("dag_version_id",)]}, [], 30)) == 1


@pytest.mark.parametrize(
    "stats, kinds",
    [
        pytest.param(TableStats("task_instance", 1000, 5000, 10 << 20), ["bloat"], id="bloated"),
        pytest.param(TableStats("task_instance", 100_000, 5000, 10 << 20), [], id="few-dead-share"),
        pytest.param(TableStats("log", 10, 900, 1 << 20), [], id="few-dead-rows"),
        pytest.param(TableStats("log", 10_000_000, 0, 2 << 30), ["large-table"], id="large"),
        pytest.param(TableStats("xcom", 100, 100_000, 3 << 30), ["bloat", "large-table"], id="both"),
    ],
)
def test_bloat_and_size(stats, kinds):
    advice = [a for a in advise({}, [stats], 30) if a.kind != "ok"]
    assert [a.kind for a in advice] == kinds


def test_clean_command_uses_cutoff():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    before = cutoff(now, 30)
    assert before == datetime(2026, 10, 31, 12, 0, tzinfo=timezone.utc)
    cmd = clean_command(before, ["job", "dag", "dag_run", "task_instance"])
    assert cmd[1:] == ["db", "clean", "--clean-before-timestamp", "2026-10-31T12:00:00+00:00",
                       "--tables", "job,dag_run,task_instance", "--yes", "--skip-archive"]


@pytest.mark.parametrize(
    "cleanable, kept",
    [
        pytest.param(["job", "dag", "dag_run", "dag_version"], ["job", "dag_run", "dag_version"], id="catalog-kept"),
        pytest.param(["log", "xcom", "session"], ["log", "xcom", "session"], id="no-catalog"),
        pytest.param(["dag"], [], id="only-catalog"),
    ],
)
def test_history_tables_leave_the_dag_catalog(cleanable, kept):
    assert history_tables(cleanable) == kept


def test_the_installed_airflow_cleans_the_catalog_by_parse_time():
    """Why `dag` is left out: Airflow ages its rows by the last parse, not by any event."""
    from airflow.utils.db_cleanup import config_dict

    assert "dag" in config_dict and config_dict["dag"].recency_column_name == "last_parsed_time"
    assert set(history_tables(list(config_dict))) >= {"dag_run", "task_instance", "xcom", "log", "job"}
