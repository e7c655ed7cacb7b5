"""The autoscaling benchmark's figures and trace family (pure parts of airscale.bench)."""

from __future__ import annotations

import pytest

from airscale.bench.autoscale_shapes import Burst, Shape, cron_minutes, dag_file, shapes, timeline, window
from airscale.bench.autoscale_trace import ShapeResult, percentile, shape_figures, verdict, worker_seconds


@pytest.mark.parametrize(
    "values,q,expected",
    [
        pytest.param([], 0.5, None, id="empty"),
        pytest.param([3.0], 0.95, 3.0, id="one"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 0.5, 2.5, id="median-interpolated"),
        pytest.param(list(range(101)), 0.95, 95.0, id="p95"),
    ],
)
def test_percentile(values, q, expected):
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    "samples,start,end,expected",
    [
        pytest.param([(0, 1), (10, 3), (20, 1)], 0, 30, 10 + 30 + 10, id="step-function"),
        pytest.param([(0, 2), (5, 2)], 0, 5, 10, id="constant"),
        pytest.param([(-5, 3), (0, 1), (4, 1)], 0, 4, 4, id="samples-before-window-ignored"),
    ],
)
def test_worker_seconds(samples, start, end, expected):
    assert worker_seconds(samples, start, end) == expected


@pytest.mark.parametrize(
    "starts,offsets,expected",
    [
        pytest.param([3600 * 5 + 58 * 60, 3600 * 6 + 4 * 60], [180], "1,7 * * * *", id="one-scheduled-shape"),
        pytest.param([3600 * 5 + 50 * 60, 3600 * 6 + 7 * 60], [780], "3,20 * * * *", id="family-timeline"),
        pytest.param([0], [120, 300], "2,5 * * * *", id="two-scheduled-shapes"),
    ],
)
def test_cron_minutes_hit_each_scheduled_run(starts, offsets, expected):
    assert cron_minutes(starts, offsets) == expected


def test_family_has_the_five_shapes_back_to_back_and_the_scheduled_run_on_a_minute():
    family = shapes()
    assert [s.name for s in family] == ["burst", "ramp", "small-bursts", "long-short", "scheduled"]
    stretches = timeline(family)
    assert [st.start for st in stretches] == [0, 180, 390, 570, 750]
    assert window(stretches) == 900
    sched = stretches[-1]
    assert sched.scheduled_at == 780 and sched.scheduled_at % 60 == 0
    assert sched.start + 30 <= sched.scheduled_at < sched.end - 30
    # The burst needs every worker: 48 tasks of 3-12 s are far more than one worker's 4 slots.
    burst = family[0].bursts[0]
    assert len(burst.short) == 48 and all(3 <= d <= 12 for d in burst.short)
    assert family == shapes()  # seeded: the same trace in every mode and run
    assert shapes(8)[0] != family[0]


@pytest.mark.parametrize(
    "family,error",
    [
        pytest.param((Shape("s", 50, (), Burst(0, "d", (1.0,))),), "no whole minute", id="too-short-for-cron"),
    ],
)
def test_timeline_refuses_a_scheduled_shape_without_a_minute(family, error):
    with pytest.raises(ValueError, match=error):
        timeline(family)


def test_dag_file_holds_every_dag_with_its_durations():
    family = shapes()
    src = dag_file(family, "13 * * * *")
    compile(src, "as_trace.py", "exec")
    for s in family:
        for d in s.dag_ids():
            assert repr(d) in src
    assert "'13 * * * *'" in src and src.count("'13 * * * *'") == 1


def test_shape_figures_split_the_mode_by_stretch():
    family = (Shape("a", 100, (Burst(0, "da", (1.0,)),)), Shape("b", 100, (Burst(0, "db", (1.0,)),)))
    stretches = timeline(family)
    samples = [(1000, 1), (1050, 3), (1100, 1), (1150, 2)]
    rows = [("success", 1.0, "da", "r1"), ("success", 3.0, "da", "r1"), ("failed", 2.0, "db", "r2"),
            ("success", None, "db", "r2"), ("success", 9.0, "dx", "r1")]
    runs = {"a": {("da", "r1")}, "b": {("db", "r2")}}
    stops = [{"at": 1020, "running_at_kill": 2}, {"at": 1150, "running_at_kill": 1}]
    out = shape_figures(stretches, 1000, samples, rows, runs, stops)
    assert out["a"].worker_seconds == 50 * 1 + 50 * 3 and out["b"].worker_seconds == 50 * 1 + 50 * 2
    assert (out["a"].tasks, out["a"].waits, out["a"].not_success, out["a"].killed_running) == (2, [1.0, 3.0], 0, 2)
    assert (out["b"].tasks, out["b"].waits, out["b"].not_success, out["b"].killed_running) == (2, [2.0], 1, 1)


@pytest.mark.parametrize(
    "other,met",
    [
        pytest.param(ShapeResult("s", 300, [1.0] * 19 + [6.0], 20), True, id="met"),
        pytest.param(ShapeResult("s", 330, [1.0] * 19 + [6.0], 20), False, id="too-many-worker-seconds"),
        pytest.param(ShapeResult("s", 300, [1.0] * 18 + [9.0, 9.0], 20), False, id="p95-too-slow"),
        pytest.param(ShapeResult("s", 300, [1.0] * 19 + [6.0], 20, not_success=1), False, id="a-task-failed"),
        pytest.param(ShapeResult("s", 300, [1.0] * 19 + [6.0], 20, killed_running=1), False, id="a-task-killed"),
        pytest.param(ShapeResult("s", 300, [1.0] * 18 + [6.0], 19), False, id="a-task-missing"),
    ],
)
def test_verdict_against_static_max(other, met):
    static = ShapeResult("s", 540, [1.0] * 19 + [6.0], 20)
    assert verdict(static, other)["met"] is met
