"""Which workers get started, drained or taken back, and when a drained one may stop."""

from __future__ import annotations

import pytest

from airscale.autoscale.plan import (
    Action, DrainVerdict, Verb, WorkerState, WorkerView, capacity, drain_verdict, plan,
)

S, ST, SV, D, STP = (WorkerState.STANDBY, WorkerState.STARTING, WorkerState.SERVING,
                     WorkerState.DRAINING, WorkerState.STOPPING)


def w(i: int, state: WorkerState, active: int | None = None, reserved: int | None = 0) -> WorkerView:
    return WorkerView(f"worker-q-{i}", "q", i, state, active, reserved if active is not None else None)


@pytest.mark.parametrize(
    "desired,workers,expected",
    [
        pytest.param(1, [w(1, SV, 2), w(2, S), w(3, S)], [], id="steady"),
        pytest.param(3, [w(1, SV, 4), w(2, S), w(3, S)],
                     [Action(Verb.START, "worker-q-2"), Action(Verb.START, "worker-q-3")], id="start-standby-in-order"),
        pytest.param(2, [w(1, SV, 4), w(2, ST), w(3, S)], [], id="starting-counts-as-capacity"),
        pytest.param(3, [w(1, SV, 4), w(2, D, 1), w(3, S)],
                     [Action(Verb.UNDRAIN, "worker-q-2"), Action(Verb.START, "worker-q-3")], id="undrain-before-start"),
        pytest.param(2, [w(1, SV, 4), w(2, D, 0), w(3, D, 3)],
                     [Action(Verb.UNDRAIN, "worker-q-3")], id="undrain-the-busiest-drainer"),
        pytest.param(1, [w(1, SV, 3), w(2, SV, 0), w(3, SV, 1)],
                     [Action(Verb.DRAIN, "worker-q-2"), Action(Verb.DRAIN, "worker-q-3")], id="drain-idle-then-least-busy"),
        pytest.param(2, [w(1, SV, 0), w(2, SV, 0), w(3, SV, 0)],
                     [Action(Verb.DRAIN, "worker-q-3")], id="equal-idle-drains-highest-index"),
        pytest.param(1, [w(1, SV, 0, reserved=2), w(2, SV, 1)],
                     [Action(Verb.DRAIN, "worker-q-2")], id="reserved-tasks-count-as-busy"),
        pytest.param(1, [w(1, SV, 2), w(2, SV, None), w(3, ST)], [Action(Verb.DRAIN, "worker-q-1")],
                     id="never-drain-a-worker-that-did-not-answer"),
        pytest.param(1, [w(1, SV, 2), w(2, D, 1), w(3, STP)], [], id="draining-and-stopping-are-not-capacity"),
        pytest.param(0, [w(1, SV, 0), w(2, S)], [Action(Verb.DRAIN, "worker-q-1")], id="scale-to-zero"),
    ],
)
def test_plan(desired, workers, expected):
    assert plan(desired, workers) == expected


def test_plan_reaches_desired_when_possible():
    workers = [w(1, SV, 1), w(2, SV, 0), w(3, S), w(4, S)]
    for desired in range(0, 5):
        actions = plan(desired, workers)
        starts = sum(a.verb is Verb.START for a in actions)
        drains = sum(a.verb is Verb.DRAIN for a in actions)
        assert capacity(workers) + starts - drains == desired


@pytest.mark.parametrize(
    "busy,elapsed,expected",
    [
        pytest.param(0, 0.5, DrainVerdict.WAIT, id="idle-but-too-soon"),
        pytest.param(0, 3.0, DrainVerdict.STOP_IDLE, id="idle-after-settle"),
        pytest.param(2, 30.0, DrainVerdict.WAIT, id="busy-waits"),
        pytest.param(None, 30.0, DrainVerdict.WAIT, id="no-answer-waits"),
        pytest.param(2, 60.0, DrainVerdict.STOP_TIMEOUT, id="busy-past-timeout"),
        pytest.param(None, 61.0, DrainVerdict.STOP_TIMEOUT, id="silent-past-timeout"),
    ],
)
def test_drain_verdict(busy, elapsed, expected):
    assert drain_verdict(busy, elapsed, timeout=60.0, settle=2.0) is expected
