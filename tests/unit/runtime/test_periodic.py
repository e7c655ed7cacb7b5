"""When a periodic job of the cluster runs (pure decision) and how its loop records failures:
the rule shared by the db-cleaner and scheduled backups (airscale.runtime.periodic)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from airscale.runtime import periodic
from airscale.runtime.periodic import Decision, decide, sleep_seconds

T0 = datetime(2026, 11, 30, tzinfo=timezone.utc)
DAY = 86_400.0


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


@pytest.mark.parametrize("now, started, last_start, last_ok, every, run, next_at, reason", [
    pytest.param(at(0), at(0), None, True, DAY, False, at(600), "first job", id="first-waits-10-minutes"),
    pytest.param(at(600), at(0), None, True, DAY, True, at(600), "first job", id="first-due"),
    pytest.param(at(3), at(0), None, True, 5.0, False, at(5), "first job", id="first-short-period"),
    pytest.param(at(100), at(0), at(-DAY + 50), True, DAY, True, at(50), "every 24 h", id="overdue-after-restart"),
    pytest.param(at(100), at(0), at(50), True, DAY, False, at(50 + DAY), "every 24 h", id="done-recently"),
    pytest.param(at(100), at(0), at(50), False, DAY, False, at(950), "retry after a failed job", id="retry-sooner"),
    pytest.param(at(950), at(0), at(50), False, DAY, True, at(950), "retry", id="retry-due"),
    pytest.param(at(60), at(0), at(50), False, 5.0, True, at(55), "retry", id="retry-not-later-than-period"),
    # A failed job long ago is retried at once after a restart, not a period later.
    pytest.param(at(100), at(0), at(-DAY), False, DAY, True, at(-DAY + 900), "retry", id="old-failure-after-restart"),
])
def test_decide(now, started, last_start, last_ok, every, run, next_at, reason):
    d = decide(now, started, last_start, last_ok, every, "job")
    assert (d.run, d.next_at) == (run, next_at)
    assert reason in d.reason


@pytest.mark.parametrize("now, next_at, expected", [
    pytest.param(at(0), at(5), 5.0, id="short"),
    pytest.param(at(0), at(DAY), periodic.MAX_SLEEP_S, id="capped"),
    pytest.param(at(10), at(5), 0.0, id="overdue"),
])
def test_sleep_seconds(now, next_at, expected):
    assert sleep_seconds(now, Decision(False, next_at, "")) == expected


class _Stop(Exception):
    pass


def test_loop_records_a_failure_retries_sooner_and_lives_on(monkeypatch):
    """A fake clock: the job fails at its first run (recorded through `failed`), is retried
    RETRY_S later (not a period later), then succeeds; sleeps are the clock's advances."""
    now = [at(0)]
    monkeypatch.setattr(periodic.time, "sleep", lambda s: now.__setitem__(0, now[0] + timedelta(seconds=s)))
    record: dict = {"last_start": None, "last_ok": True}
    events: list[tuple[str, float]] = []

    def last():
        if len(events) == 3:
            raise _Stop
        return record["last_start"], record["last_ok"]

    def attempt(begin):
        if not events:
            raise RuntimeError("database away")
        events.append(("ok", (begin - T0).total_seconds()))
        record.update(last_start=begin, last_ok=True)

    def failed(begin, e):
        events.append((f"failed: {e}", (begin - T0).total_seconds()))
        record.update(last_start=begin, last_ok=False)

    with pytest.raises(_Stop):
        periodic.run_every("job", DAY, last, attempt, failed, lambda: now[0], logging.getLogger("test"))
    assert events == [("failed: database away", 600.0), ("ok", 600.0 + periodic.RETRY_S),
                      ("ok", 600.0 + periodic.RETRY_S + DAY)]


def test_state_file_is_written_whole(tmp_path):
    path = tmp_path / "state" / "job.json"
    periodic.write_json_atomic(path, {"a": 1})
    periodic.write_json_atomic(path, {"a": 2})
    assert path.read_text() == '{"a": 2}' and not path.with_suffix(".tmp").exists()
