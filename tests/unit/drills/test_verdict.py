"""The drill verdict: from observations to lost / stuck / hit / recovery, table-driven."""

from __future__ import annotations

import pytest

from airscale.drills.report import markdown
from airscale.drills.verdict import Observation, TaskObs, judge, summary_lines

T0 = 1_000_000.0  # the fault
RUNS = ("r1", "r2")


def tasks(run: str, n: int = 3, state: str = "success", end: float = T0 + 10, tries: int = 1) -> list[TaskObs]:
    return [TaskObs(run, f"t{i}", state, tries, end if state == "success" else None) for i in range(n)]


def obs(**kw) -> Observation:
    base = dict(
        scenario="worker-kill", fault_at=T0, watched_until=T0 + 100, triggered_runs=RUNS,
        run_states={"r1": "success", "r2": "success"}, tasks_per_run=3,
        tasks=tuple(tasks("r1") + tasks("r2")),
    )
    base.update(kw)
    return Observation(**base)


@pytest.mark.parametrize(
    "o, expected",
    [
        pytest.param(obs(), dict(passed=True, runs_succeeded=2, tasks_lost=0, tasks_stuck=0, tasks_hit=0,
                                 recovery_s=10.0), id="clean"),
        pytest.param(obs(run_states={"r1": "success"}, tasks=tuple(tasks("r1"))),
                     dict(passed=False, runs_lost=1, tasks_lost=3), id="run-missing-is-lost-with-its-tasks"),
        pytest.param(obs(tasks=tuple(tasks("r1") + tasks("r2", n=2))),
                     dict(passed=False, runs_lost=0, tasks_lost=1), id="task-missing-is-lost"),
        pytest.param(obs(run_states={"r1": "success", "r2": "running"},
                         tasks=tuple(tasks("r1") + tasks("r2", n=2) + [TaskObs("r2", "t2", "queued", 1, None)])),
                     dict(passed=False, runs_stuck=1, tasks_stuck=1), id="queued-at-the-end-is-stuck"),
        pytest.param(obs(run_states={"r1": "success", "r2": "failed"},
                         tasks=tuple(tasks("r1") + tasks("r2", n=2) + [TaskObs("r2", "t2", "failed", 3, None)])),
                     dict(passed=False, runs_failed=1, tasks_failed=1, tasks_hit=1), id="failed-run-fails"),
        pytest.param(obs(tasks=tuple(tasks("r1") + tasks("r2", n=2) + [TaskObs("r2", "t2", "success", 2, T0 + 75)]),
                         earlier_tries=(TaskObs("r2", "t2", "failed", 1, T0 + 65),)),
                     dict(passed=True, tasks_hit=1, interrupted_done_s=75.0, recovery_s=10.0),
                     id="retried-task-recovers-and-passes"),
        pytest.param(obs(tasks=tuple(tasks("r1", end=T0 - 5) + tasks("r2", end=T0 + 42))),
                     dict(passed=True, recovery_s=42.0, meets_target=False), id="recovery-over-target"),
        pytest.param(obs(tasks=tuple(tasks("r1", end=T0 - 5) + tasks("r2", end=T0 - 1))),
                     dict(passed=False, recovery_s=None), id="nothing-completed-after-fault"),
        pytest.param(obs(restarts_before={"worker-default-1": 1, "scheduler-1": 0},
                         restarts_after={"worker-default-1": 2, "scheduler-1": 0, "redis": 1}),
                     dict(restarts={"redis": 1, "worker-default-1": 1}), id="restart-deltas-only"),
        pytest.param(obs(component_back_at=T0 + 12.34), dict(component_back_s=12.3), id="component-back"),
        pytest.param(obs(tasks=tuple(tasks("r1", end=T0 + 3) + tasks("r2", end=T0 + 40)), done_seen_at=T0 + 24.0),
                     dict(recovery_s=24.0), id="success-committed-after-its-end-counts-when-readable"),
        pytest.param(obs(tasks=tuple(tasks("r1", end=T0 + 3) + tasks("r2", end=T0 + 40)), done_seen_at=T0 + 3.4),
                     dict(recovery_s=3.4), id="readable-at-once"),
        pytest.param(obs(committed_before=tuple(tasks("r1", end=T0 - 5)),
                         tasks=tuple([TaskObs("r1", "t0", "running", 1, None)] + tasks("r1")[1:] + tasks("r2")),
                         run_states={"r1": "running", "r2": "success"}),
                     dict(passed=False, committed_lost=1), id="success-rolled-back-by-failover"),
        pytest.param(obs(committed_before=tuple(tasks("r1", end=T0 - 5))), dict(passed=True, committed_lost=0),
                     id="committed-successes-kept"),
        pytest.param(obs(triggered_runs=("r1",), run_states={"r1": "success", "r9": "failed"},
                         tasks=tuple(tasks("r1") + tasks("r9", state="failed"))),
                     dict(passed=True, runs_total=1, tasks_failed=0), id="other-runs-are-ignored"),
        pytest.param(obs(alerts_expected=("ComponentRestarted",), alerts=("ComponentRestarted (worker-default-1)",)),
                     dict(passed=True, alerts_missing=()), id="expected-alert-fired"),
        pytest.param(obs(alerts_expected=("DatabaseRestarted", "ComponentRestarted"),
                         alerts=("ComponentRestarted (pg-1)",)),
                     dict(passed=False, alerts_missing=("DatabaseRestarted",)), id="expected-alert-missing-fails"),
        pytest.param(obs(alerts_expected=None, alerts=()), dict(passed=True, alerts_missing=()),
                     id="no-monitoring-nothing-to-check"),
        pytest.param(obs(alerts_expected=("ComponentRestarted",), alerts=(),
                         alerts_standing=("ComponentRestarted (pg-1)",)),
                     dict(passed=True, alerts_missing=(), alerts_standing=("ComponentRestarted (pg-1)",)),
                     id="alert-still-firing-for-the-component-hit-again"),
    ],
)
def test_judge(o: Observation, expected: dict) -> None:
    v = judge(o, target_recovery_s=30.0)
    for field, value in expected.items():
        assert getattr(v, field) == value, field


def test_interrupted_done_unknown_while_a_hit_task_is_unfinished() -> None:
    o = obs(run_states={"r1": "success", "r2": "running"},
            tasks=tuple(tasks("r1") + tasks("r2", n=2) + [TaskObs("r2", "t2", "up_for_retry", 1, None)]),
            earlier_tries=())
    v = judge(o)
    assert v.interrupted_done_s is None
    assert not v.passed
    assert any("unfinished" in r for r in v.reasons)


def test_summary_and_report_name_every_count() -> None:
    v = judge(obs(fault_detail="kill -9 worker-default-1"))
    text = "\n".join(summary_lines(v))
    assert "PASS" in text and "2/2 succeeded" in text and "0 lost" in text
    md = markdown([v], "airscale drill all -s x.yaml")
    assert "| worker-kill | PASS | 2/2 |" in md
    assert "`airscale drill all -s x.yaml`" in md


def _alert(name: str, received: float, starts: str, status: str = "firing", **labels) -> str:
    import json

    return json.dumps({"alertname": name, "status": status, "received_at": received, "starts_at": starts,
                       "labels": labels})


@pytest.mark.parametrize("lines, names", [
    pytest.param([_alert("ComponentRestarted", T0 + 20, "1970-01-12T13:46:50Z", component="scheduler-1")],
                 ["ComponentRestarted (scheduler-1)"], id="started-after-the-fault"),
    pytest.param([_alert("ComponentRestarted", T0 + 20, "1970-01-12T13:40:00.5Z", component="scheduler-1")],
                 [], id="older-alert-repeated-in-a-later-notification"),
    pytest.param([_alert("BrokerRestarted", T0 + 20, "1970-01-12T13:46:50Z", status="resolved")], [],
                 id="resolved-left-out"),
    pytest.param([_alert("BrokerRestarted", T0 - 5, "1970-01-12T13:46:30Z")], [], id="received-before"),
])
def test_alerts_since_counts_alerts_started_after_the_fault(tmp_path, lines, names) -> None:
    from types import SimpleNamespace

    from airscale.drills.observe import alerts_since
    from airscale.observe.stack import MonitoringLayout

    f = MonitoringLayout.of(tmp_path).alerts_jsonl
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("\n".join(lines) + "\n")
    assert alerts_since(SimpleNamespace(layout=SimpleNamespace(root=tmp_path)), T0) == names


@pytest.mark.parametrize("lines, standing", [
    pytest.param([_alert("ComponentRestarted", T0 - 60, "1970-01-12T13:45:40Z", component="pg-1")],
                 ["ComponentRestarted (pg-1)"], id="fired-before-not-resolved"),
    pytest.param([_alert("ComponentRestarted", T0 - 60, "1970-01-12T13:45:40Z", component="pg-1"),
                  _alert("ComponentRestarted", T0 - 5, "1970-01-12T13:45:40Z", status="resolved", component="pg-1")],
                 [], id="resolved-since"),
    pytest.param([_alert("ComponentRestarted", T0 + 20, "1970-01-12T13:46:50Z", component="pg-1")], [],
                 id="new-one-is-not-standing"),
])
def test_alerts_still_firing(tmp_path, lines, standing) -> None:
    from types import SimpleNamespace

    from airscale.drills.observe import alerts_still_firing
    from airscale.observe.stack import MonitoringLayout

    f = MonitoringLayout.of(tmp_path).alerts_jsonl
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("\n".join(lines) + "\n")
    assert alerts_still_firing(SimpleNamespace(layout=SimpleNamespace(root=tmp_path)), T0) == standing
