"""The spec section, the component `up` starts, the signal helpers, and the loop's survival."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from airscale.assembly import CAPABILITIES
from airscale.autoscale import records
from airscale.autoscale.actuator import LocalActuator, startup_estimate
from airscale.autoscale.loop import (
    BUSY_INTERVAL_S,
    Autoscaler,
    backoff_delay,
    next_delay,
)
from airscale.autoscale.metrics import AutoscalerMetrics
from airscale.autoscale.plan import WorkerState, WorkerView
from airscale.autoscale.signals import (
    NodeReport,
    QueueSnapshot,
    Snapshot,
    priority_keys,
    tasks_in_serialized_dag,
    worker_state,
)
from airscale.errors import AirscaleError
from airscale.runtime.components import components
from airscale.runtime.layout import Layout
from airscale.spec import Ports, load_spec
from tests.conftest import write_spec


@pytest.mark.parametrize("data, on", [
    pytest.param({}, True, id="default-queue-1-to-2"),
    pytest.param({"queues": {"a": {"min_workers": 2, "max_workers": 2}, "b": {"min_workers": 0, "max_workers": 1}}},
                 True, id="one-queue-with-room"),
    pytest.param({"queues": {"a": {"min_workers": 2, "max_workers": 2}}}, False, id="fixed-workers"),
    pytest.param({"autoscaling": {"enabled": False}}, False, id="explicit-false"),
    pytest.param({"queues": {"a": {"min_workers": 1, "max_workers": 1}}, "autoscaling": {"enabled": True}},
                 True, id="explicit-true"),
    pytest.param({"cluster": {"profile": "dev"}}, False, id="dev-has-no-workers"),
])
def test_a_queue_with_room_is_autoscaled_unless_the_spec_says_otherwise(spec_dir, data, on):
    spec = load_spec(write_spec(spec_dir, {"database": {"url": "postgresql://u:p@h/db"}, **data}))
    assert spec.autoscaling.enabled is on
    assert spec.autoscaling.stabilization_window is None  # derived (tuning.autoscaling)
    assert ("autoscaler" in {c.name for c in components(spec, Layout(spec_dir / "d"), None, CAPABILITIES)}) is on


def test_enabled_adds_the_autoscaler_last(spec_dir):
    path = write_spec(spec_dir, {"database": {"url": "postgresql://u:p@h/db"},
                                 "autoscaling": {"enabled": True, "interval": 2}})
    spec = load_spec(path)
    comps = components(spec, Layout(spec_dir / "d"), None, CAPABILITIES)
    (auto,) = [c for c in comps if c.name == "autoscaler"]
    # After the workers it scales; stopped before them by `down`, which goes in reverse.
    assert auto.stage > max(c.stage for c in comps if c.kind == "worker")
    assert auto.command[-2:] == ("--spec", str(path.resolve()))


@pytest.mark.parametrize(
    "section,field",
    [
        pytest.param({"interval": 0}, "autoscaling.interval", id="interval-zero"),
        pytest.param({"tolerance": 2}, "autoscaling.tolerance", id="tolerance-too-big"),
        pytest.param({"scale_up_max_step": 0}, "autoscaling.scale_up_max_step", id="step-zero"),
        pytest.param({"stabilisation_window": 10}, "autoscaling.stabilisation_window", id="typo"),
    ],
)
def test_bad_autoscaling_values_name_the_field(spec_dir, section, field):
    with pytest.raises(AirscaleError) as e:
        load_spec(write_spec(spec_dir, {"autoscaling": section}))
    assert field in e.value.problem


def test_metrics_port_is_in_the_block():
    assert Ports(29300).autoscaler_metrics == 29311


@pytest.mark.parametrize(
    "sup,report,expected",
    [
        pytest.param("STOPPED", None, WorkerState.STANDBY, id="stopped"),
        pytest.param("FATAL", None, WorkerState.STANDBY, id="fatal-can-be-started"),
        pytest.param("STARTING", None, WorkerState.STARTING, id="starting"),
        pytest.param("RUNNING", None, WorkerState.STARTING, id="running-not-answering"),
        pytest.param("RUNNING", NodeReport(frozenset({"q"}), 1, 0), WorkerState.SERVING, id="serving"),
        pytest.param("RUNNING", NodeReport(frozenset(), 1, 0), WorkerState.DRAINING, id="draining"),
        pytest.param("STOPPING", None, WorkerState.STOPPING, id="stopping"),
        # supervisord says STARTING for startsecs whatever the worker does: one that answers
        # already consumes (and its start-up is timed from that answer).
        pytest.param("STARTING", NodeReport(frozenset({"q"}), 0, 0), WorkerState.SERVING,
                     id="starting-but-answering"),
        pytest.param("BACKOFF", NodeReport(frozenset({"q"}), 0, 0), WorkerState.STARTING, id="backoff"),
    ],
)
def test_worker_state(sup, report, expected):
    assert worker_state(sup, report, "q") is expected


def test_priority_keys_match_kombu():
    # kombu's redis transport: queue + "\x06\x16" + step for steps other than 0.
    assert priority_keys("default") == ["default", "default\x06\x163", "default\x06\x166", "default\x06\x169"]


def test_tasks_in_serialized_dag():
    data = {"dag": {"tasks": [
        {"__var": {"task_id": "a"}, "__type": "operator"},
        {"__var": {"task_id": "b", "queue": "reports"}, "__type": "operator"},
        {"__var": {"task_id": "c", "queue": "default"}, "__type": "operator"},
    ]}}
    assert tasks_in_serialized_dag(data, "default") == {"default": 2, "reports": 1}


# -- the loop, with stand-ins for the cluster ---------------------------------------------------

class FlakySignals:
    """Fails on chosen calls, like a database that restarts."""

    def __init__(self, fail_on: set[int]):
        self.calls, self.fail_on = 0, fail_on

    def read(self, lookahead):
        self.calls += 1
        if self.calls in self.fail_on:
            raise ConnectionError("database restarting")
        workers = (WorkerView("worker-q-1", "q", 1, WorkerState.SERVING, 4, 0),
                   WorkerView("worker-q-2", "q", 2, WorkerState.STANDBY))
        return Snapshot({"q": QueueSnapshot("q", queued=10, running=4, broker_depth=10, forecast=0,
                                            workers=workers)})


class RecordingActuator:
    dry_run = False

    def __init__(self):
        self.applied = []

    def progress(self, snap):
        return []

    def apply(self, queue, actions, views=()):
        self.applied.append(actions)
        return [f"{a.verb.value} {a.worker}" for a in actions]

    def undrain_all(self, snaps):
        pass


@pytest.fixture
def scaler(spec_dir):
    spec = load_spec(write_spec(spec_dir, {
        "cluster": {"data_dir": str(spec_dir / "data")},
        "queues": {"q": {"min_workers": 1, "max_workers": 2, "concurrency": 4}},
        "autoscaling": {"interval": 0.5},
    }))
    clock = iter(float(i) for i in range(10_000))
    return Autoscaler(spec, FlakySignals({2, 3}), RecordingActuator(), Layout(spec.data_path),
                      AutoscalerMetrics(CollectorRegistry()), clock=lambda: next(clock))


def test_loop_survives_failed_iterations(scaler, monkeypatch):
    stop = threading.Event()
    # Stop after the 5th call to read, whatever happened in between.
    real_read = scaler.signals.read

    def read(lookahead):
        if scaler.signals.calls >= 4:
            stop.set()
        return real_read(lookahead)

    monkeypatch.setattr(scaler.signals, "read", read)
    monkeypatch.setattr("airscale.autoscale.loop.backoff_delay", lambda failures, interval: 0.01)
    scaler.run(stop)
    m = scaler.metrics.registry
    assert m.get_sample_value("airscale_autoscaler_iteration_errors_total") == 2
    assert m.get_sample_value("airscale_autoscaler_desired_workers", {"queue": "q"}) == 2
    assert m.get_sample_value("airscale_autoscaler_actual_workers", {"queue": "q"}) == 1
    assert m.get_sample_value("airscale_autoscaler_decisions_total", {"queue": "q", "reason": "ScaleUp"}) >= 1
    state = records.read_state(scaler.layout)
    assert state["queues"]["q"]["reason"] == "ScaleUp"
    assert "database restarting" in state["recent_errors"][-1]


def test_decisions_file_skips_unchanged_decisions(scaler):
    scaler.signals.fail_on = set()
    for _ in range(3):
        scaler.iterate()
    lines = records.read_jsonl(records.decisions_file(scaler.layout))
    # The stand-in actuator reports a start each time (the worker never appears), so every
    # iteration acted and is written; a real unchanged decision with no action is not.
    assert len(lines) == 3 and all(line["actions"] == ["start worker-q-2"] for line in lines)
    scaler.actuator.apply = lambda queue, actions, views=(): []
    scaler.iterate()
    scaler.iterate()
    assert len(records.read_jsonl(records.decisions_file(scaler.layout))) == 3


@pytest.mark.parametrize(
    "failures,expected",
    [
        pytest.param(0, 5, id="healthy"),
        pytest.param(1, 5, id="first-failure"),
        pytest.param(3, 20, id="doubles"),
        pytest.param(20, 60, id="capped"),
    ],
)
def test_backoff(failures, expected):
    assert backoff_delay(failures, 5.0) == expected


@pytest.mark.parametrize(
    "interval,failures,urgent,expected",
    [
        pytest.param(5.0, 0, False, 5.0, id="quiet-spec-interval"),
        pytest.param(5.0, 0, True, BUSY_INTERVAL_S, id="busy-polls-faster"),
        pytest.param(0.5, 0, True, 0.5, id="busy-never-slower-than-spec"),
        pytest.param(5.0, 3, True, 20.0, id="failures-back-off-even-when-busy"),
    ],
)
def test_next_delay(interval, failures, urgent, expected):
    assert next_delay(interval, failures, urgent) == expected


def test_loop_polls_faster_while_work_is_queued(scaler):
    scaler.signals.fail_on = set()
    scaler.iterate()  # 10 queued, a worker to start
    assert scaler.urgent is True


@pytest.mark.parametrize(
    "recent,expected",
    [
        pytest.param([], None, id="none-measured"),
        pytest.param([4.8], 4.8, id="one"),
        pytest.param([5.0, 17.5, 9.0], 17.5, id="slowest-recent"),
    ],
)
def test_startup_estimate(recent, expected):
    assert startup_estimate(recent) == expected


def _views(state: WorkerState) -> tuple[WorkerView, ...]:
    return (WorkerView("worker-q-1", "q", 1, WorkerState.SERVING, 0, 0), WorkerView("worker-q-2", "q", 2, state))


def _snap(state: WorkerState) -> QueueSnapshot:
    return QueueSnapshot("q", queued=0, running=0, broker_depth=0, forecast=0, workers=_views(state))


class StubSupervisor:
    def __init__(self):
        self.started = []

    def start(self, name):
        self.started.append(name)


def test_actuator_times_a_start_to_its_first_answer(spec_dir):
    from airscale.autoscale.plan import Action, Verb

    spec = load_spec(write_spec(spec_dir, {"cluster": {"data_dir": str(spec_dir / "data")}}))
    layout = Layout(spec.data_path)
    now = [100.0]
    act = LocalActuator(spec, signals=None, supervisor=StubSupervisor(), layout=layout, clock=lambda: now[0])
    assert act.startup_s("q") is None
    act.apply("q", [Action(Verb.START, "worker-q-2")])
    now[0] = 104.0
    act.progress(_snap(WorkerState.STARTING))  # not answering yet: nothing timed
    assert act.startup_s("q") is None
    now[0] = 107.5
    act.progress(_snap(WorkerState.SERVING))
    assert act.startup_s("q") == 7.5
    (rec,) = records.read_jsonl(records.starts_file(layout))
    assert (rec["worker"], rec["queue"], rec["startup_s"], rec["at"]) == ("worker-q-2", "q", 7.5, 107.5)
    # Timed once; a restarted autoscaler reads the recent start-ups back from the file.
    act.progress(_snap(WorkerState.SERVING))
    assert len(records.read_jsonl(records.starts_file(layout))) == 1
    again = LocalActuator(spec, signals=None, supervisor=StubSupervisor(), layout=layout)
    assert again.startup_s("q") == 7.5
