from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airscale.auth import audit
from airscale.errors import AirscaleError

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("30m", NOW - timedelta(minutes=30)),
    ("2h", NOW - timedelta(hours=2)),
    ("7d", NOW - timedelta(days=7)),
    ("1w", NOW - timedelta(weeks=1)),
    ("45s", NOW - timedelta(seconds=45)),
    ("2026-12-06T14:00:00+00:00", datetime(2026, 12, 6, 14, tzinfo=UTC)),
    ("2026-12-06T14:00:00", datetime(2026, 12, 6, 14, tzinfo=UTC)),  # no zone: UTC, like `now`
])
def test_since(text, expected):
    assert audit.parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "1y", "-2h", "2h; DROP TABLE log", ""])
def test_since_refuses_what_it_cannot_read(text):
    with pytest.raises(AirscaleError, match="--since"):
        audit.parse_since(text, NOW)


def test_filters_are_bound_parameters_never_sql_text():
    q = audit.query(NOW, "alice'; DROP TABLE log; --", "etl", 50)
    assert "alice" not in q.sql and "DROP" not in q.sql and "etl" not in q.sql
    assert q.params == (list(audit.TASK_STATE_EVENTS), NOW, "alice'; DROP TABLE log; --", "etl", 50)
    assert "owner = %s" in q.sql and "dag_id = %s" in q.sql and "dttm >= %s" in q.sql


def test_task_state_events_only_on_request_and_limit_bounded():
    q = audit.query(None, None, None, 10**9, tasks=True)
    assert "WHERE" not in q.sql and q.params == (audit.MAX_ROWS,)


def test_rows_become_events_with_parsed_extra():
    row = (7, NOW, "alice", "trigger_dag_run", "etl", None, None, '{"conf": {}, "method": "POST"}')
    e = audit.event_of(row)
    assert e.as_json() == {"when": NOW.isoformat(), "user": "alice", "event": "trigger_dag_run", "dag_id": "etl",
                           "task_id": None, "run_id": None, "extra": {"conf": {}, "method": "POST"}}
    assert audit.event_of((1, NOW, None, "x", None, None, None, "not json")).extra == "not json"
