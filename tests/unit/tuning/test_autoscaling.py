"""The autoscaling settings derived from what the machine measured, and the memory check, as tables."""

from __future__ import annotations

import pytest

from airscale.errors import AirscaleError
from airscale.spec import Spec
from airscale.tuning.autoscaling import (
    ASSUMED_STARTUP_S,
    MEMORY_SAMPLES,
    WORKER_PARENT_MIB,
    Measured,
    MemoryFigures,
    check_memory,
    derive,
    fit_memory,
    measured_from,
    memory_fit,
)

TWO_QUEUES = {"queues": {"a": {"min_workers": 1, "max_workers": 4}, "b": {"min_workers": 0, "max_workers": 2}}}


def spec(data: dict | None = None, **autoscaling) -> Spec:
    return Spec.model_validate({**(data or TWO_QUEUES), "autoscaling": autoscaling})


@pytest.mark.parametrize(
    "measured, interval, window, source",
    [
        # 10 s assumed: a third of it, 4 start-ups, nothing subtracted.
        pytest.param(Measured(), 3.3, 40, "assumed", id="nothing-measured"),
        # Fast start-ups: the interval stops at 2 s, the window at its 20 s floor.
        pytest.param(Measured(startups=(1.0, 1.2)), 2.0, 20, "measured", id="fast-starts-hit-the-floors"),
        # The slowest recent start counts: 12 s -> 4 s interval, 48 s window.
        pytest.param(Measured(startups=(4.0, 12.0, 6.0)), 4.0, 48, "measured", id="slowest-start-counts"),
        # A drain is a grace period of its own: 4 x 12 - median(6, 8, 10) = 40.
        pytest.param(Measured(startups=(12.0,), drains=(6.0, 10.0, 8.0)), 4.0, 40, "measured", id="drain-subtracted"),
        # A loaded host: 90 s start-ups, the interval stops at 5 s and the window at the HPA's 300 s.
        pytest.param(Measured(startups=(90.0,)), 5.0, 300, "measured", id="slow-host-hits-the-ceilings"),
    ],
)
def test_interval_and_window_follow_the_measured_start_ups(measured, interval, window, source):
    d = derive(spec(), measured)
    assert d.value("interval") == interval
    assert d.value("stabilization_window") == window
    assert d.get("stabilization_window").source == source
    assert ("measured worker start-ups" in d.get("interval").reason) is bool(measured.startups)


@pytest.mark.parametrize(
    "data, step",
    [
        pytest.param(TWO_QUEUES, 3, id="largest-room-of-the-queues"),
        pytest.param({"queues": {"a": {"min_workers": 2, "max_workers": 2}}}, 1, id="no-room-still-1"),
        pytest.param({"queues": {"a": {"min_workers": 0, "max_workers": 16}}}, 16, id="whole-burst-at-once"),
    ],
)
def test_the_step_is_the_room_a_queue_has(data, step):
    assert derive(spec(data), Measured()).value("scale_up_max_step") == step


@pytest.mark.parametrize(
    "given, key, value",
    [
        pytest.param({"interval": 7.5}, "interval", 7.5, id="interval"),
        pytest.param({"stabilization_window": 300}, "stabilization_window", 300, id="window"),
        pytest.param({"stabilization_window": 0}, "stabilization_window", 0, id="zero-window-is-a-value"),
        pytest.param({"scale_up_max_step": 2}, "scale_up_max_step", 2, id="step"),
        pytest.param({"memory_floor_mib": 100}, "memory_floor_mib", 100, id="floor"),
    ],
)
def test_a_value_in_the_spec_wins(given, key, value):
    d = derive(spec(**given), Measured(startups=(3.0,), total_memory_mib=8192))
    assert d.value(key) == value and d.get(key).source == "spec"
    others = {s.key for s in d.settings if s.source == "spec"}
    assert others == {key}


@pytest.mark.parametrize(
    "total, floor",
    [pytest.param(None, 512, id="unknown"), pytest.param(2048, 512, id="small-machine-min"),
     pytest.param(24576, 2458, id="ten-percent")],
)
def test_memory_floor(total, floor):
    assert derive(spec(), Measured(total_memory_mib=total)).value("memory_floor_mib") == floor


def test_measured_from_records_keeps_the_recent_ones_and_idle_drains_only():
    starts = [{"startup_s": s} for s in (50, 1, 2, 3, 4, 5)]
    stops = [{"reason": "drained", "drain_seconds": 3}, {"reason": "drain-timeout", "drain_seconds": 600}]
    m = measured_from(starts, stops, 1000.0)
    assert m.startups == (1.0, 2.0, 3.0, 4.0, 5.0) and m.startup_s == 5.0
    assert m.drains == (3.0,) and m.total_memory_mib == 1000.0
    assert Measured().startup_s is None and ASSUMED_STARTUP_S > 0


FIG = MemoryFigures(worker_parent_mib=100, idle_slot_mib=40, running_task_mib=40, cluster_mib=1000, scheduler_mib=150,
                    api_server_mib=300, api_proxy_mib=20)


@pytest.mark.parametrize(
    "queues, total, fits",
    [
        # 4 x (100 + 8 x 80) = 2960 + 1000 + 2 x 150 = 4260 MiB
        pytest.param({"a": {"min_workers": 1, "max_workers": 4, "concurrency": 8}}, 8192, True, id="fits"),
        pytest.param({"a": {"min_workers": 1, "max_workers": 4, "concurrency": 8}}, 5000, False, id="headroom-counts"),
        pytest.param({"a": {"max_workers": 4, "concurrency": 64}, "b": {"max_workers": 2, "concurrency": 16}},
                     24576, False, id="the-issue's-4x64"),
    ],
)
def test_memory_fit(queues, total, fits):
    s = spec({"queues": queues, "api_server": {"count": 1}})
    fit = memory_fit(s, total, FIG)
    assert fit.fits is fits
    assert fit.need_mib == 1300 + sum(q["max_workers"] * (100 + q["concurrency"] * 80) for q in queues.values())


@pytest.mark.parametrize(
    "data, own",
    [
        pytest.param({"api_server": {"count": 1}}, 1000 + 2 * 150, id="one-api-server"),
        pytest.param({}, 1000 + 2 * 150 + 300 + 20, id="scale-default-two-behind-haproxy"),
        pytest.param({"api_server": {"count": 4}, "schedulers": {"count": 1}}, 1000 + 150 + 3 * 300 + 20,
                     id="four-api-servers"),
        pytest.param({"cluster": {"profile": "dev"}}, 1000 + 2 * 150, id="dev-default-one"),
    ],
)
def test_memory_counts_each_api_server(data, own):
    assert memory_fit(spec(data), 100_000, FIG).cluster_mib == own


def test_a_spec_too_large_is_refused_naming_the_queues_and_figures():
    s = spec({"queues": {"small": {"max_workers": 1, "concurrency": 2},
                         "big": {"max_workers": 4, "concurrency": 64}}})
    with pytest.raises(AirscaleError) as e:
        check_memory(s, 16384, FIG)
    msg = str(e.value)
    assert "queues.big: 4 workers x 64 slots = 20.4 GiB" in msg and "queues.small" in msg
    assert "16.0 GiB" in msg and "13.6 GiB after 15% headroom" in msg
    assert "lower queues.big.max_workers or queues.big.concurrency" in e.value.fix


def test_dev_profile_counts_no_workers():
    s = Spec.model_validate({"cluster": {"profile": "dev"}})
    assert memory_fit(s, 4096, FIG).queues == () and check_memory(s, 4096, FIG).fits


# --- the memory figures refitted from the running cluster's samples -------------------------------
def _samples(slot: float, task: float, rows: list[tuple[int, int]], parent: float = WORKER_PARENT_MIB) -> list[dict]:
    """Worker samples (concurrency, active) whose trees are exactly parent + c*slot + b*task."""
    return [{"concurrency": c, "active": b, "tree_mib": parent + c * slot + b * task} for c, b in rows]


PRIOR = MemoryFigures()


@pytest.mark.parametrize("samples, slot, task, measured", [
    pytest.param([], PRIOR.idle_slot_mib, PRIOR.running_task_mib, False, id="nothing-sampled"),
    pytest.param(_samples(30, 50, [(4, 0), (4, 2)]), PRIOR.idle_slot_mib, PRIOR.running_task_mib, False,
                 id="too-few"),
    pytest.param(_samples(30, 50, [(4, 0), (4, 2), (4, 4), (8, 1)]), 30, 50, True, id="both-from-varied-load"),
    pytest.param(_samples(22, 50, [(4, 0), (4, 0), (8, 0)]), 22, PRIOR.running_task_mib, True,
                 id="idle-only-keeps-the-task-figure"),
    pytest.param(_samples(PRIOR.idle_slot_mib, 64, [(4, 4), (4, 4), (8, 8)]), PRIOR.idle_slot_mib, 64, True,
                 id="always-full-keeps-the-slot-figure"),
    # Trees smaller than the worker itself: a worker mid-start, not a figure.
    pytest.param(_samples(-10, -5, [(4, 0), (4, 2), (4, 4)]), PRIOR.idle_slot_mib, PRIOR.running_task_mib, False,
                 id="nonsense-ignored"),
    pytest.param([{"concurrency": 4, "active": None, "tree_mib": 999.0}] * 5 + _samples(30, 50, [(4, 0), (4, 4)]),
                 PRIOR.idle_slot_mib, PRIOR.running_task_mib, False, id="unanswered-workers-do-not-count"),
    # Seen on a live cluster: idle workers sampled after their tasks outweigh busy ones sampled
    # early (pool processes keep their memory); the task figure is held at the bound, the slot
    # refitted from all samples with it.
    pytest.param([{"concurrency": 4, "active": b, "tree_mib": t} for b, t in
                  [(0, 320.3), (4, 431.6), (4, 341.1), (4, 372.3), (0, 414.1), (0, 400.8), (0, 413.7), (0, 415.3)]],
                 70.3, 5.0, True, id="pool-growth-held-at-the-bound"),
    # Only the last MEMORY_SAMPLES count: tasks grew heavier since.
    pytest.param(_samples(30, 50, [(4, 0), (4, 4)] * 40) + _samples(30, 90, [(4, 0), (4, 2), (4, 4)] * 20),
                 30, 90, True, id="recent-samples-win"),
])
def test_fit_memory(samples, slot, task, measured):
    m = fit_memory(samples)
    assert (m.idle_slot_mib, m.running_task_mib) == (pytest.approx(slot, abs=0.05), pytest.approx(task, abs=0.05))
    assert ("measured on this cluster" in m.source) == measured
    assert m.worker_parent_mib == PRIOR.worker_parent_mib


def test_noisy_samples_fit_near_the_truth():
    import random

    rnd = random.Random(7)
    rows = [(8, rnd.randint(0, 8)) for _ in range(MEMORY_SAMPLES)]
    noisy = [{**s, "tree_mib": s["tree_mib"] + rnd.uniform(-8, 8)} for s in _samples(35, 45, rows)]
    m = fit_memory(noisy)
    assert abs(m.idle_slot_mib - 35) < 3 and abs(m.running_task_mib - 45) < 3, m


def test_plan_and_refusal_use_the_refitted_figures():
    """derive carries the measured figures; check_memory names where its figures came from."""
    spec = Spec.model_validate({"cluster": {"name": "m"}, "queues": {"q": {"min_workers": 1, "max_workers": 4,
                                                                          "concurrency": 16}}})
    heavy = fit_memory(_samples(40, 900, [(16, 0), (16, 8), (16, 16)]))
    assert derive(spec, Measured(memory=heavy)).memory == heavy
    check_memory(spec, 24 * 1024)  # the recorded figures: 4 x 16 slots fit in 24 GiB
    with pytest.raises(AirscaleError) as e:
        check_memory(spec, 24 * 1024, heavy)  # 900 MiB tasks do not
    assert "measured on this cluster: 3 worker samples" in str(e.value)
