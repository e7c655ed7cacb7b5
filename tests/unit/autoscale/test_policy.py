"""The policy as tables: each row a sequence of observations and the decisions they must give."""

from __future__ import annotations

import random

import pytest

from airscale.autoscale.policy import Due, Observation, QueuePolicy, Reason, recommend

P = QueuePolicy(min_workers=1, max_workers=5, concurrency=4, tolerance=0.1, scale_up_max_step=2,
                stabilization_window=60.0)


def replay(policy: QueuePolicy, steps: list[tuple[float, dict]], start: int):
    """Feed observations in time order, the workers following each decision at once."""
    current, history, out = start, (), []
    for t, obs in steps:
        d = recommend(Observation(current=current, **obs), policy, history, t)
        history = d.history
        out.append((d.desired, d.reason))
        current = d.desired
    return out


@pytest.mark.parametrize(
    "policy,current,obs,desired,reason",
    [
        pytest.param(P, 1, {}, 1, Reason.AT_MIN, id="idle-at-min"),
        pytest.param(P, 1, {"queued": 3, "running": 4}, 2, Reason.SCALE_UP, id="queue-grows-one-step"),
        pytest.param(P, 1, {"queued": 40, "running": 4}, 3, Reason.SCALE_UP_LIMITED, id="burst-rate-limited"),
        pytest.param(P, 5, {"queued": 100, "running": 20}, 5, Reason.AT_MAX, id="burst-at-max"),
        pytest.param(P, 4, {"queued": 100}, 5, Reason.SCALE_UP, id="burst-capped-at-max"),
        pytest.param(P, 0, {}, 1, Reason.BELOW_MIN, id="below-min-restored"),
        pytest.param(P, 7, {"running": 28}, 5, Reason.ABOVE_MAX, id="above-max-lowered"),
        pytest.param(P, 3, {"running": 12}, 3, Reason.STEADY, id="exactly-full"),
        pytest.param(
            QueuePolicy(1, 20, 8, tolerance=0.1), 10, {"running": 85}, 10, Reason.WITHIN_TOLERANCE,
            id="within-tolerance-up",
        ),
        pytest.param(
            QueuePolicy(1, 20, 8, tolerance=0.1), 10, {"running": 72}, 10, Reason.WITHIN_TOLERANCE,
            id="within-tolerance-down",
        ),
        pytest.param(
            QueuePolicy(1, 20, 8, tolerance=0.1), 10, {"running": 89}, 12, Reason.SCALE_UP,
            id="beyond-tolerance-up",
        ),
        pytest.param(P, 1, {"due": (Due(30, 16),)}, 3, Reason.SCALE_UP_LIMITED, id="prewarm-limited-by-step"),
        pytest.param(P, 4, {}, 4, Reason.SCALE_DOWN_STABILIZED, id="fresh-start-keeps-workers"),
        pytest.param(P, 1, {"due": (Due(30, 8),)}, 2, Reason.PREWARM, id="prewarm-before-runs-start"),
        pytest.param(P, 3, {"queued": 10, "due": (Due(30, 4),)}, 3, Reason.STEADY, id="forecast-below-load-ignored"),
        pytest.param(
            P, 2, {"queued": 1, "broker_depth": 9, "worker_busy": 3}, 3, Reason.SCALE_UP,
            id="broker-sees-more-than-db",
        ),
        pytest.param(
            P, 2, {"queued": 9, "broker_depth": 0, "worker_busy": 0}, 3, Reason.SCALE_UP,
            id="db-sees-more-than-broker",
        ),
        pytest.param(
            QueuePolicy(0, 3, 4), 0, {}, 0, Reason.AT_MIN, id="min-zero-stays-empty",
        ),
        pytest.param(
            QueuePolicy(0, 3, 4), 0, {"queued": 1}, 1, Reason.SCALE_UP, id="min-zero-first-task",
        ),
    ],
)
def test_single_decision(policy, current, obs, desired, reason):
    d = recommend(Observation(current=current, **obs), policy, (), now=1000.0)
    assert (d.desired, d.reason) == (desired, reason), d.message
    assert d.message  # every decision explains itself


@pytest.mark.parametrize(
    "policy,start,steps,expected",
    [
        pytest.param(
            P, 1,
            [(0, {"queued": 40}), (5, {"queued": 30, "running": 12}), (10, {"queued": 20, "running": 20}),
             (15, {"running": 20})],
            [(3, Reason.SCALE_UP_LIMITED), (5, Reason.SCALE_UP), (5, Reason.AT_MAX), (5, Reason.STEADY)],
            id="burst-grows-in-steps",
        ),
        pytest.param(
            P, 5,
            [(0, {"running": 20}), (10, {}), (30, {}), (59, {}), (61, {}), (70, {})],
            [(5, Reason.STEADY), (5, Reason.SCALE_DOWN_STABILIZED), (5, Reason.SCALE_DOWN_STABILIZED),
             (5, Reason.SCALE_DOWN_STABILIZED), (1, Reason.SCALE_DOWN), (1, Reason.AT_MIN)],
            id="idle-waits-for-the-window",
        ),
        pytest.param(
            P, 5,
            [(0, {"running": 20}), (30, {"running": 8}), (61, {"running": 8}), (91, {"running": 8})],
            [(5, Reason.STEADY), (5, Reason.SCALE_DOWN_STABILIZED), (2, Reason.SCALE_DOWN),
             (2, Reason.STEADY)],
            id="down-to-window-highest",
        ),
        pytest.param(
            P, 1,
            [(t, {"running": 20 if (t // 10) % 2 == 0 else 0}) for t in range(0, 120, 10)],
            [(3, Reason.SCALE_UP_LIMITED), (3, Reason.SCALE_DOWN_STABILIZED), (5, Reason.SCALE_UP)]
            + [(5, Reason.SCALE_DOWN_STABILIZED) if i % 2 == 0 else (5, Reason.STEADY) for i in range(9)],
            id="flapping-input-holds-steady",
        ),
        pytest.param(
            QueuePolicy(1, 3, 4, stabilization_window=20, scale_to_zero=True), 1,
            [(0, {}), (10, {}), (21, {}), (30, {"queued": 1}), (35, {"running": 1})],
            [(1, Reason.SCALE_DOWN_STABILIZED), (1, Reason.SCALE_DOWN_STABILIZED), (0, Reason.SCALE_TO_ZERO),
             (1, Reason.SCALE_UP), (1, Reason.STEADY)],
            id="scale-to-zero-and-back",
        ),
        pytest.param(
            QueuePolicy(1, 3, 4, stabilization_window=20, scale_to_zero=True), 1,
            [(0, {"due": (Due(30, 2),)}), (30, {"due": (Due(30, 2),)})],
            [(1, Reason.STEADY), (1, Reason.STEADY)],
            id="scale-to-zero-not-with-runs-due",
        ),
        pytest.param(
            P, 1,
            [(0, {"due": (Due(30, 12),)}), (5, {"due": (Due(30, 12),)}), (10, {"queued": 12}), (15, {"running": 12})],
            [(3, Reason.PREWARM), (3, Reason.STEADY), (3, Reason.STEADY), (3, Reason.STEADY)],
            id="prewarmed-before-the-burst",
        ),
        pytest.param(
            QueuePolicy(2, 4, 8, stabilization_window=0), 4,
            [(0, {"running": 3}), (1, {"running": 3})],
            [(2, Reason.SCALE_DOWN), (2, Reason.AT_MIN)],
            id="no-window-scales-down-at-once",
        ),
    ],
)
def test_sequences(policy, start, steps, expected):
    assert replay(policy, steps, start) == expected


def test_history_is_bounded_by_the_window():
    history = ()
    for t in range(0, 1000, 5):
        history = recommend(Observation(current=1, queued=t % 7), P, history, float(t)).history
    assert len(history) <= P.stabilization_window / 5 + 1
    assert all(995 - r.at < P.stabilization_window for r in history)


def test_same_input_same_decision():
    """No hidden inputs: the clock and the history are the only state."""
    obs = Observation(current=2, queued=13, running=5, due=(Due(30, 3),))
    assert recommend(obs, P, (), 42.0) == recommend(obs, P, (), 42.0)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(P, id="min1-max5"),
        pytest.param(QueuePolicy(0, 8, 2, tolerance=0.3, scale_up_max_step=1, stabilization_window=15), id="min0"),
        pytest.param(QueuePolicy(3, 3, 16), id="min-equals-max"),
        pytest.param(QueuePolicy(2, 10, 4, scale_to_zero=True, stabilization_window=10), id="scale-to-zero"),
    ],
)
def test_invariant_bounds_over_random_sequences(policy, seed):
    """min <= desired <= max after every decision, whatever the input and the starting point
    (the floor is 0 only when scale-to-zero is on and nothing is queued, running or due)."""
    rng = random.Random(seed)
    current, history, t = rng.randint(0, 20), (), 0.0
    for _ in range(300):
        t += rng.choice([0.0, 0.5, 5.0, 30.0, 400.0])
        obs = Observation(
            current=current,
            queued=rng.choice([0, 0, rng.randint(0, 500)]),
            running=rng.randint(0, 50),
            broker_depth=rng.choice([None, rng.randint(0, 100)]),
            worker_busy=rng.choice([None, rng.randint(0, 40)]),
            due=rng.choice([(), (), (Due(rng.uniform(-30, 200), rng.randint(0, 200)),)]),
            scheduled=rng.choice([0, rng.randint(0, 100)]),
            scheduled_runs=rng.choice([0, 1]),
            startup_s=rng.choice([None, rng.uniform(1, 90)]),
        )
        d = recommend(obs, policy, history, t)
        floor = 0 if policy.scale_to_zero and obs.demand == 0 and obs.forecast == 0 else policy.min_workers
        assert floor <= d.desired <= policy.max_workers, (obs, d)
        if current >= floor and d.desired > current:
            assert d.desired - current <= policy.scale_up_max_step
        history = d.history
        # Workers do not always follow: some starts fail, some drains take a while.
        current = d.desired if rng.random() < 0.7 else rng.randint(0, policy.max_workers + 2)


# -- pre-warm lead from the measured start-up, release after scheduled runs -------------------

S = QueuePolicy(min_workers=1, max_workers=3, concurrency=4, stabilization_window=30.0, interval=2.0,
                prewarm_lookahead=120.0)


@pytest.mark.parametrize(
    "policy,startup_s,expected",
    [
        pytest.param(S, None, 120.0, id="not-measured-whole-lookahead"),
        pytest.param(S, 10.0, 10.0 + 2 * 2.0 + 5.0, id="startup-plus-two-intervals-and-slack"),
        pytest.param(S, 200.0, 120.0, id="capped-by-lookahead"),
        pytest.param(QueuePolicy(1, 3, 4, prewarm_lookahead=0.0), 10.0, 0.0, id="prewarm-off"),
    ],
)
def test_prewarm_lead(policy, startup_s, expected):
    assert policy.prewarm_lead(startup_s) == expected


@pytest.mark.parametrize(
    "obs,desired,reason",
    [
        pytest.param({"due": (Due(40, 8),), "startup_s": 10.0}, 1, Reason.AT_MIN, id="due-beyond-measured-lead"),
        pytest.param({"due": (Due(18, 8),), "startup_s": 10.0}, 2, Reason.PREWARM, id="due-within-measured-lead"),
        pytest.param({"due": (Due(100, 8),)}, 2, Reason.PREWARM, id="start-up-unknown-whole-lookahead"),
        pytest.param({"due": (Due(-5, 8),), "startup_s": 10.0}, 2, Reason.PREWARM, id="overdue-not-created-yet"),
        pytest.param({"due": (Due(5, 4), Due(60, 40)), "startup_s": 10.0}, 1, Reason.STEADY,
                     id="only-runs-within-lead-count"),
        pytest.param({"due": (Due(5, 6), Due(15, 6)), "startup_s": 10.0}, 3, Reason.PREWARM,
                     id="runs-within-lead-add-up"),
    ],
)
def test_prewarm_sized_to_runs_within_the_lead(obs, desired, reason):
    d = recommend(Observation(current=1, **obs), S, (), now=1000.0)
    assert (d.desired, d.reason) == (desired, reason), d.message


@pytest.mark.parametrize(
    "steps,expected",
    [
        pytest.param(
            # pre-warm 18 s ahead, the run's 8 tasks, the run done: released at once
            [(0, {"due": (Due(18, 8),), "startup_s": 10.0}),
             (18, {"queued": 8, "scheduled": 8, "scheduled_runs": 1}),
             (22, {"running": 2, "scheduled": 2, "scheduled_runs": 1}),
             (24, {}), (26, {})],
            [(2, Reason.PREWARM), (2, Reason.STEADY), (2, Reason.SCALE_DOWN_STABILIZED),
             (1, Reason.SCHEDULED_DONE), (1, Reason.AT_MIN)],
            id="scheduled-burst-released-when-its-run-is-done",
        ),
        pytest.param(
            # the same load from a manual run: nobody announced it, the window holds it
            [(0, {}), (18, {"queued": 8}), (22, {"running": 2}), (24, {}), (49, {})],
            [(1, Reason.AT_MIN), (2, Reason.SCALE_UP), (2, Reason.SCALE_DOWN_STABILIZED),
             (2, Reason.SCALE_DOWN_STABILIZED), (1, Reason.SCALE_DOWN)],
            id="unannounced-burst-held-for-the-window",
        ),
        pytest.param(
            # a scheduled run between two waves of tasks: still in progress, so the window holds
            [(0, {"queued": 12, "scheduled": 12, "scheduled_runs": 1}),
             (10, {"scheduled_runs": 1}), (14, {"queued": 12, "scheduled": 12, "scheduled_runs": 1})],
            [(3, Reason.SCALE_UP), (3, Reason.SCALE_DOWN_STABILIZED), (3, Reason.STEADY)],
            id="scheduled-run-between-waves-held",
        ),
        pytest.param(
            # manual load alongside the scheduled run: only the scheduled part is released early
            [(0, {"queued": 12, "scheduled": 4, "scheduled_runs": 1}), (10, {}), (12, {}), (31, {})],
            [(3, Reason.SCALE_UP), (2, Reason.SCALE_DOWN_STABILIZED), (2, Reason.SCALE_DOWN_STABILIZED),
             (1, Reason.SCALE_DOWN)],
            id="unannounced-part-still-held",
        ),
        pytest.param(
            # the broker and workers, read after the DB, already see the run's next tasks: still
            # all announced, released when the run is done
            [(0, {"queued": 8, "scheduled": 8, "scheduled_runs": 1, "broker_depth": 6, "worker_busy": 8}),
             (10, {"broker_depth": 0, "worker_busy": 0}), (12, {})],
            [(3, Reason.SCALE_UP), (1, Reason.SCHEDULED_DONE), (1, Reason.AT_MIN)],
            id="read-skew-is-not-unannounced-load",
        ),
    ],
)
def test_release_after_scheduled_runs(steps, expected):
    assert replay(S, steps, 1) == expected


# --- scale-up sized to the backlog, held by memory -------------------------------------------
# The policy `from_spec` builds for a queue of 1-8 workers x 4 slots with the derived step
# (max_workers - min_workers = 7): a worker with 4 busy slots takes 100 + 4 x 80 = 420 MiB.
B = QueuePolicy(min_workers=1, max_workers=8, concurrency=4, scale_up_max_step=7, stabilization_window=40.0,
                memory_floor_mib=1000, worker_mib=420)


@pytest.mark.parametrize(
    "current, obs, desired, reason",
    [
        pytest.param(1, {"queued": 20, "running": 4}, 6, Reason.SCALE_UP, id="burst-gets-its-workers-at-once"),
        pytest.param(1, {"queued": 60, "running": 4}, 8, Reason.SCALE_UP, id="bigger-burst-up-to-max"),
        pytest.param(1, {"queued": 20, "running": 4, "memory_available_mib": 1000 + 5 * 420}, 6, Reason.SCALE_UP,
                     id="room-for-exactly-five"),
        pytest.param(1, {"queued": 20, "running": 4, "memory_available_mib": 1000 + 2 * 420 + 10}, 3,
                     Reason.MEMORY_HEADROOM, id="room-for-two"),
        pytest.param(1, {"queued": 20, "running": 4, "memory_available_mib": 900}, 1, Reason.MEMORY_HEADROOM,
                     id="below-the-floor-already"),
        pytest.param(0, {"queued": 20, "memory_available_mib": 0}, 1, Reason.MEMORY_HEADROOM,
                     id="min-workers-start-anyway"),
        pytest.param(3, {"running": 4, "memory_available_mib": 0}, 3, Reason.SCALE_DOWN_STABILIZED,
                     id="memory-never-stops-a-worker"),
        pytest.param(1, {"queued": 20, "running": 4, "memory_available_mib": None}, 6, Reason.SCALE_UP,
                     id="memory-not-read"),
    ],
)
def test_scale_up_is_sized_to_the_backlog_within_memory(current, obs, desired, reason):
    d = recommend(Observation(current=current, **obs), B, (), 100.0)
    assert (d.desired, d.reason) == (desired, reason), d.message
    if reason is Reason.MEMORY_HEADROOM:
        assert "MiB available for new workers" in d.message and "420 MiB" in d.message


def test_the_old_two_at_a_time_limit_still_applies_when_the_spec_sets_it():
    limited = QueuePolicy(1, 8, 4, scale_up_max_step=2)
    d = recommend(Observation(current=1, queued=20, running=4), limited, (), 0.0)
    assert (d.desired, d.reason) == (3, Reason.SCALE_UP_LIMITED)


@pytest.mark.parametrize(
    "busy, starting, left",
    [
        pytest.param([], 0, 5000, id="no-workers"),
        pytest.param([4, 4], 0, 5000, id="full-workers-take-nothing-more"),
        pytest.param([0, 2], 0, 5000 - 6 * 41, id="free-slots-will-fill"),
        pytest.param([None], 0, 5000 - 4 * 41, id="silent-worker-counts-idle"),
        pytest.param([None, 1], 1, 5000 - 7 * 41 - (100 + 4 * 38.5), id="starting-worker-not-resident-yet"),
    ],
)
def test_memory_for_new_workers(busy, starting, left):
    from airscale.autoscale.policy import memory_for_new_workers
    from airscale.tuning.autoscaling import MemoryFigures

    fig = MemoryFigures(worker_parent_mib=100, idle_slot_mib=38.5, running_task_mib=41)
    assert memory_for_new_workers(5000, 4, busy, starting, fig) == pytest.approx(left)


def test_from_spec_takes_the_derived_settings():
    from airscale.spec import Spec
    from airscale.tuning.autoscaling import Measured, MemoryFigures, derive

    spec = Spec.model_validate({"queues": {"default": {"min_workers": 1, "max_workers": 8, "concurrency": 4}},
                                "autoscaling": {"interval": 4}})
    p = QueuePolicy.from_spec(spec, "default", derive(spec, Measured(startups=(6.0,), total_memory_mib=20000)),
                              MemoryFigures(worker_parent_mib=100, idle_slot_mib=40, running_task_mib=40))
    assert (p.interval, p.stabilization_window, p.scale_up_max_step) == (4, 24, 7)
    assert (p.memory_floor_mib, p.worker_mib) == (2000, 420)
