"""The trace family replayed against the real policy (airscale.bench.autoscale_replay): what the
policy itself allows on each shape, without a cluster."""

from __future__ import annotations

import pytest

from airscale.bench.autoscale_replay import STARTUP_S, compare, policy_for, replay
from airscale.bench.autoscale_shapes import shapes

SHAPES = {s.name: s for s in shapes()}
SMALL = SHAPES["small-bursts"]
GAP_S = 20.0 - max(SMALL.bursts[0].short)  # quiet time between two small bursts


def test_static_max_answers_every_small_burst_at_once():
    r = replay(SMALL, None)
    assert r.p95_wait_s == 0 and max(r.waits) == 0
    assert r.worker_seconds == pytest.approx(3 * SMALL.length)


@pytest.mark.parametrize("name", ["burst", "scheduled"])
def test_the_defaults_meet_the_targets(name):
    row = compare(SHAPES[name], policy_for())
    assert row["met"], row


def test_the_scheduled_burst_is_prewarmed():
    row = compare(SHAPES["scheduled"], policy_for())
    assert row["p95_s"] <= row["static_p95_s"], row


@pytest.mark.parametrize("window", [1.0, 5.0, 10.0, 15.0])
def test_a_window_shorter_than_the_gap_makes_each_small_burst_wait(window):
    """The second worker goes in each quiet gap; the fifth task of the next burst (4 slots a
    worker) waits for a slot, since a new worker takes longer to start than a task to run."""
    assert window < GAP_S and max(SMALL.bursts[0].short) < STARTUP_S
    row = compare(SMALL, policy_for(window))
    assert row["p95_s"] >= min(SMALL.bursts[0].short) and row["p95_x"] is None, row


@pytest.mark.parametrize("window", [18.0, 20.0, 30.0])
def test_a_window_as_long_as_the_gap_holds_two_workers(window):
    """Held through every gap, the second worker answers each burst at once, and costs more
    than 0.6x static max's worker-seconds: no window meets both targets on this shape."""
    row = compare(SMALL, policy_for(window))
    assert row["p95_s"] <= 0.1 and row["worker_seconds_x"] > 0.6, row
