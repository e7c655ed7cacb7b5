"""When scheduled backups run and which archives retention deletes (pure), their record, the
exporter's reading of it, and when `up` runs the component."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from airscale.assembly import CAPABILITIES
from airscale.backup import schedule
from airscale.backup.schedule import State, to_delete
from airscale.backup.take import archive_name, archive_pattern
from airscale.observe.exporter import backup_success_time

T0 = datetime(2026, 12, 6, tzinfo=timezone.utc)
DAY = 86_400.0


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def _names(cluster: str, days: list[int]) -> list[str]:
    return [archive_name(cluster, T0 + timedelta(days=d)) for d in days]


@pytest.mark.parametrize("names, keep, expected", [
    pytest.param(_names("c", [3, 1, 2]), 2, _names("c", [1]), id="oldest-goes"),
    pytest.param(_names("c", [1, 2]), 2, [], id="at-keep"),
    pytest.param(_names("c", [1]), 7, [], id="fewer-than-keep"),
    pytest.param(_names("c", [1, 2, 3]) + _names("c-eu", [0]) + ["notes.txt", "mine.tar"], 1, _names("c", [1, 2]),
                 id="only-this-clusters-archives"),
    pytest.param(_names("c", [1, 2, 3, 4]), 1, _names("c", [1, 2, 3]), id="keep-one"),
])
def test_to_delete(names, keep, expected):
    pattern = archive_pattern("c")
    assert to_delete(names, lambda n: bool(pattern.match(n)), keep) == expected


@pytest.mark.parametrize("days", [[1, 5, 2, 9, 3], [4], list(range(12))])
@pytest.mark.parametrize("keep", [1, 3, 7])
def test_retention_keeps_the_newest(days, keep):
    names = _names("c", days)
    pattern = archive_pattern("c")
    gone = to_delete(names, lambda n: bool(pattern.match(n)), keep)
    kept = sorted(set(names) - set(gone))
    assert len(kept) == min(keep, len(names))
    assert not gone or max(gone) < min(kept)


def test_prune_deletes_files(tmp_path):
    for n in _names("c", [1, 2, 3]) + ["notes.txt"]:
        (tmp_path / n).write_text("x")
    assert schedule.prune(tmp_path, "c", 2) == _names("c", [1])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(_names("c", [2, 3]) + ["notes.txt"])
    assert schedule.prune(tmp_path / "missing", "c", 2) == []


def test_state_round_trip_and_exporter_reading(tmp_path):
    path = tmp_path / "state" / "backup.json"
    assert schedule.load_state(path) == State()
    s = State(since=at(0), last_start=at(10), last_ok=True, last_ok_at=at(70), archive="/b/x.tar", detail="1 MB")
    schedule.save_state(path, s)
    assert schedule.load_state(path) == s
    import json

    assert backup_success_time(json.loads(path.read_text())) == at(70).timestamp()
    schedule.save_state(path, State(since=at(0), last_start=at(10), last_ok=False))
    assert backup_success_time(json.loads(path.read_text())) == at(0).timestamp(), "never good: ages from the start"


@pytest.mark.parametrize("raw, expected", [
    pytest.param({}, None, id="empty"),
    pytest.param([], None, id="not-a-mapping"),
    pytest.param({"last_ok_at": "yesterday"}, None, id="garbage-time"),
])
def test_exporter_reads_damaged_records_as_nothing(raw, expected):
    assert backup_success_time(raw) == expected


def test_damaged_state_starts_afresh(tmp_path):
    path = tmp_path / "backup.json"
    path.write_text("{not json")
    assert schedule.load_state(path) == State()


@pytest.mark.parametrize("backup, present", [
    pytest.param({}, False, id="off-by-default"),
    pytest.param({"every_hours": 24}, True, id="daily"),
])
def test_up_runs_the_backup_component_when_scheduled(tmp_path, backup, present):
    from airscale.observe.rules import rules
    from airscale.observe.stack import exporter_config
    from airscale.runtime.components import components
    from airscale.runtime.layout import Layout
    from airscale.spec import load_spec

    f = tmp_path / "airscale.yaml"
    f.write_text(yaml.safe_dump({"cluster": {"profile": "dev", "data_dir": "data"}, "backup": backup}))
    spec = load_spec(f)
    layout = Layout(spec.data_path)
    comps = components(spec, layout, tmp_path, CAPABILITIES)
    mine = [c for c in comps if c.name == schedule.BACKUP]
    assert bool(mine) is present
    assert ("BackupTooOld" in {r.name for r in rules(spec)}) is present
    assert bool(exporter_config(spec, layout, comps)["backup_state_file"]) is present
    if present:
        assert mine[0].command[-1] == str(f)
        assert spec.backup_path == spec.data_path / "backups"


def test_backup_dir_is_relative_to_the_spec(tmp_path):
    from airscale.spec import load_spec

    f = tmp_path / "airscale.yaml"
    f.write_text(yaml.safe_dump({"backup": {"every_hours": 1, "dir": "../bk", "keep": 3}}))
    assert load_spec(f).backup_path == (tmp_path.parent / "bk").resolve()


@pytest.mark.parametrize("backup, field", [
    pytest.param({"every_hours": -1}, "backup.every_hours", id="negative"),
    pytest.param({"keep": 0}, "backup.keep", id="keep-nothing"),
    pytest.param({"every": 24}, "backup.every", id="typo"),
])
def test_bad_backup_fields_are_named(tmp_path, backup, field):
    from airscale.errors import AirscaleError
    from airscale.spec import load_spec

    f = tmp_path / "airscale.yaml"
    f.write_text(yaml.safe_dump({"backup": backup}))
    with pytest.raises(AirscaleError, match=field.replace(".", r"\.")):
        load_spec(f)
