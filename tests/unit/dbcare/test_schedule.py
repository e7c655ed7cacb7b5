"""The db-cleaner's state file, and when `up` runs it (when it cleans: tests/unit/runtime/test_periodic.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airscale.assembly import CAPABILITIES
from airscale.dbcare import schedule
from airscale.dbcare.schedule import State

T0 = datetime(2026, 11, 30, tzinfo=timezone.utc)
DAY = 86_400.0


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_state_round_trip(tmp_path):
    path = tmp_path / "state" / "db-clean.json"
    assert schedule.load_state(path) == State()
    s = State(at(42), False, "OperationalError: down")
    schedule.save_state(path, s)
    assert schedule.load_state(path) == s


def test_damaged_state_starts_afresh(tmp_path):
    path = tmp_path / "db-clean.json"
    path.write_text("{not json")
    assert schedule.load_state(path) == State()


@pytest.mark.parametrize(
    "every, profile, present",
    [
        pytest.param(0, "dev", False, id="off-by-default"),
        pytest.param(24, "dev", True, id="dev-profile"),
        pytest.param(0.5, "scale", True, id="scale-profile"),
    ],
)
def test_up_runs_the_cleaner_when_scheduled(tmp_path, every, profile, present):
    import yaml

    from airscale.runtime.components import components
    from airscale.runtime.layout import Layout
    from airscale.spec import load_spec

    f = tmp_path / "airscale.yaml"
    f.write_text(yaml.safe_dump({"cluster": {"profile": profile, "data_dir": "data"},
                                 "tuning": {"db_clean_every_hours": every}}))
    spec = load_spec(f)
    comps = components(spec, Layout(spec.data_path), tmp_path, CAPABILITIES)
    cleaner = [c for c in comps if c.name == schedule.DB_CLEANER]
    assert bool(cleaner) is present
    if present:
        assert cleaner[0].command[-1] == str(f)
        # Started after every earlier stage (the autoscaler may share its stage).
        assert comps.index(cleaner[0]) >= len([c for c in comps if c.stage < cleaner[0].stage])


def test_negative_interval_is_refused(tmp_path):
    import yaml

    from airscale.errors import AirscaleError
    from airscale.spec import load_spec

    f = tmp_path / "airscale.yaml"
    f.write_text(yaml.safe_dump({"tuning": {"db_clean_every_hours": -1}}))
    with pytest.raises(AirscaleError, match="db_clean_every_hours"):
        load_spec(f)
