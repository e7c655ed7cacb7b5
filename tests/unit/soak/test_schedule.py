"""The soak's fault schedule (airscale.soak.schedule): a seed names the whole run."""

from __future__ import annotations

import pytest

from airscale.soak import schedule
from airscale.soak.schedule import DEFAULT_KINDS, HA_KINDS, choose, kinds_for, plan


def test_the_same_seed_gives_the_same_faults():
    a = plan(7, 3600, 300, 300, 120, 20, DEFAULT_KINDS)
    assert a == plan(7, 3600, 300, 300, 120, 20, DEFAULT_KINDS)
    assert a != plan(8, 3600, 300, 300, 120, 20, DEFAULT_KINDS)


@pytest.mark.parametrize(
    "seed, duration, warmup, quiet, mean_gap, min_gap, kinds",
    [
        pytest.param(1, 3600, 300, 300, 120, 20, DEFAULT_KINDS, id="hour-default"),
        pytest.param(2, 3600, 600, 300, 90, 20, HA_KINDS, id="hour-ha"),
        pytest.param(3, 180, 30, 40, 25, 12, DEFAULT_KINDS, id="make-test-short"),
        pytest.param(4, 1200, 120, 120, 60, 60, DEFAULT_KINDS, id="gap-floor-equals-mean"),
    ],
)
def test_faults_fall_between_warmup_and_the_quiet_end_at_least_min_gap_apart(
        seed, duration, warmup, quiet, mean_gap, min_gap, kinds):
    faults = plan(seed, duration, warmup, quiet, mean_gap, min_gap, kinds)
    assert faults, "a window of several gaps plans some fault"
    times = [f.at_s for f in faults]
    assert times == sorted(times)
    assert all(warmup < t <= duration - quiet for t in times)
    assert all(b - a >= min_gap - 1e-6 for a, b in zip([warmup, *times], times))
    assert all(0 <= f.pick < 1 and f.kind in kinds for f in faults)


def test_kinds_come_in_shuffled_rounds_every_kind_once_per_round():
    faults = plan(11, 100_000, 0, 0, 60, 10, HA_KINDS)
    kinds = [f.kind for f in faults]
    n = len(HA_KINDS)
    for i in range(0, len(kinds) - n + 1, n):
        assert sorted(kinds[i:i + n]) == sorted(HA_KINDS)
    # Not always the same order: the rounds are shuffled.
    assert len({tuple(kinds[i:i + n]) for i in range(0, len(kinds) - n + 1, n)}) > 1


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((1, 600, 300, 300, 60, 10, DEFAULT_KINDS), id="no-window"),
        pytest.param((1, 3600, 0, 0, 60, 10, ()), id="no-kinds"),
        pytest.param((1, 3600, 0, 0, 0, 10, DEFAULT_KINDS), id="no-gap"),
    ],
)
def test_nothing_planned_without_room(args):
    assert plan(*args) == []


def test_profiles():
    assert kinds_for("default") == DEFAULT_KINDS and schedule.POSTGRES_PRIMARY not in DEFAULT_KINDS
    assert kinds_for("ha") == HA_KINDS and schedule.POSTGRES_PRIMARY in HA_KINDS


@pytest.mark.parametrize(
    "candidates, pick, expected",
    [
        pytest.param(["scheduler-2", "scheduler-1"], 0.0, "scheduler-1", id="sorted-first"),
        pytest.param(["scheduler-2", "scheduler-1"], 0.5, "scheduler-2", id="sorted-second"),
        pytest.param(["scheduler-2", "scheduler-1"], 0.999, "scheduler-2", id="near-one"),
        pytest.param(["api-server-1"], 0.7, "api-server-1", id="only-one"),
        pytest.param([], 0.3, None, id="none"),
    ],
)
def test_choose(candidates, pick, expected):
    assert choose(candidates, pick) == expected
