"""From what a drill observed to its verdict (pure: no I/O, no clock).

A drill triggers a known workload, injects one fault at `fault_at`, and watches until every
DAG run ends or time runs out. The verdict answers the questions a reliability claim rests on:

- lost: a triggered DAG run that is not in the database, or a task instance of a run that
  is missing (the workload's DAG has a known number of tasks per run);
- stuck: a DAG run or task instance still not finished when the drill stopped watching;
- hit by the fault: a task that had to run again (an earlier try failed or was retried) or
  ended failed; the workload's tasks never fail by themselves, so every such try is the fault's;
- recovery: seconds from the fault to the next task completion (the issue's definition),
  plus the time until the last task the fault interrupted finished, and until the killed
  component was healthy again.

A drill passes when nothing is lost or stuck and every DAG run succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
RETRIED_STATES = frozenset({"failed", "up_for_retry", "restarting"})


@dataclass(frozen=True)
class TaskObs:
    """A task instance's latest try, or (in `earlier_tries`) one of its earlier tries."""

    run_id: str
    task_id: str
    state: str | None
    try_number: int
    end_date: float | None  # epoch seconds
    map_index: int = -1


@dataclass(frozen=True)
class Observation:
    scenario: str
    fault_at: float  # epoch seconds
    watched_until: float
    triggered_runs: tuple[str, ...]
    run_states: Mapping[str, str]  # run_id -> state, for the runs found in the database
    tasks_per_run: int
    tasks: tuple[TaskObs, ...]
    earlier_tries: tuple[TaskObs, ...] = ()
    restarts_before: Mapping[str, int] = field(default_factory=dict)
    restarts_after: Mapping[str, int] = field(default_factory=dict)
    component_back_at: float | None = None  # the faulted component healthy again
    # When the drill first read a task success after the fault (polled every 0.5 s).
    done_seen_at: float | None = None
    fault_detail: str = ""
    alerts: tuple[str, ...] = ()
    # Alert names this fault should raise; None when no monitoring stack with the local
    # receiver runs (nothing to check).
    alerts_expected: tuple[str, ...] | None = None
    # Alerts of an earlier fault still firing for what this fault hit again (no new alert).
    alerts_standing: tuple[str, ...] = ()
    # Task instances that had succeeded when the fault was injected: a database failover
    # must not take any of them back.
    committed_before: tuple[TaskObs, ...] = ()


@dataclass(frozen=True)
class Verdict:
    scenario: str
    passed: bool
    reasons: tuple[str, ...]
    runs_total: int
    runs_succeeded: int
    runs_failed: int
    runs_lost: int
    runs_stuck: int
    tasks_total: int
    tasks_lost: int
    tasks_stuck: int
    tasks_failed: int  # ended failed (after any retries)
    tasks_hit: int  # had to run again, or failed
    recovery_s: float | None  # fault -> next task completion
    interrupted_done_s: float | None  # fault -> the last task the fault hit finished
    component_back_s: float | None
    restarts: Mapping[str, int]
    meets_target: bool  # recovery within the target
    committed_lost: int = 0  # succeeded before the fault, not succeeded after it
    fault_detail: str = ""
    alerts: tuple[str, ...] = ()
    alerts_missing: tuple[str, ...] = ()
    alerts_standing: tuple[str, ...] = ()


def missing_alerts(expected: tuple[str, ...] | None, fired: tuple[str, ...]) -> tuple[str, ...]:
    """Expected alert names with no fired alert of that name ("Name (component)" counts)."""
    names = {a.split(" (", 1)[0] for a in fired}
    return tuple(e for e in (expected or ()) if e not in names)


def judge(obs: Observation, target_recovery_s: float = 30.0) -> Verdict:
    triggered = set(obs.triggered_runs)
    runs_lost = len(triggered - set(obs.run_states))
    states = [obs.run_states[r] for r in triggered if r in obs.run_states]
    runs_stuck = sum(1 for s in states if s not in TERMINAL_RUN_STATES)
    runs_succeeded = sum(1 for s in states if s == "success")
    runs_failed = sum(1 for s in states if s == "failed")

    mine = [t for t in obs.tasks if t.run_id in triggered]
    per_run: dict[str, int] = {}
    for t in mine:
        per_run[t.run_id] = per_run.get(t.run_id, 0) + 1
    # Runs that are themselves lost count their tasks as lost too.
    tasks_lost = sum(max(0, obs.tasks_per_run - per_run.get(r, 0)) for r in triggered)
    tasks_stuck = sum(1 for t in mine if t.state not in TERMINAL_TI_STATES)
    tasks_failed = sum(1 for t in mine if t.state == "failed")

    key = lambda t: (t.run_id, t.task_id, t.map_index)  # noqa: E731
    hit = {key(t) for t in obs.earlier_tries if t.run_id in triggered and t.state in RETRIED_STATES}
    hit |= {key(t) for t in mine if t.state == "failed" or t.try_number > 1}

    after = sorted(t.end_date for t in mine if t.state == "success" and t.end_date and t.end_date > obs.fault_at)
    # A success counts from when it was committed and readable, not from its end_date: during a
    # failover a task can end while its success waits for the new primary.
    first = max(after[0], obs.done_seen_at) if after and obs.done_seen_at else (after[0] if after else None)
    recovery = round(first - obs.fault_at, 1) if first is not None else None
    hit_ends = [t.end_date for t in mine if key(t) in hit and t.state == "success" and t.end_date]
    interrupted_done = round(max(hit_ends) - obs.fault_at, 1) if hit_ends and len(hit_ends) == len(hit) else None
    back = round(obs.component_back_at - obs.fault_at, 1) if obs.component_back_at else None
    restarts = {
        name: n - obs.restarts_before.get(name, 0)
        for name, n in sorted(obs.restarts_after.items())
        if n - obs.restarts_before.get(name, 0) > 0
    }

    final = {key(t): t.state for t in mine}
    committed_lost = sum(1 for t in obs.committed_before
                         if t.run_id in triggered and t.state == "success" and final.get(key(t)) != "success")

    reasons = []
    if committed_lost:
        reasons.append(f"{committed_lost} task success(es) committed before the fault were lost")
    if runs_lost:
        reasons.append(f"{runs_lost} DAG run(s) lost")
    if tasks_lost:
        reasons.append(f"{tasks_lost} task instance(s) lost")
    if runs_stuck or tasks_stuck:
        reasons.append(f"{runs_stuck} DAG run(s) and {tasks_stuck} task instance(s) still unfinished "
                       f"{obs.watched_until - obs.fault_at:.0f}s after the fault")
    if runs_failed:
        reasons.append(f"{runs_failed} DAG run(s) failed")
    if recovery is None:
        reasons.append("no task completed after the fault")
    alerts_missing = missing_alerts(obs.alerts_expected, obs.alerts + obs.alerts_standing)
    if alerts_missing:
        reasons.append(f"no alert {', '.join(alerts_missing)} reached the receiver: nobody would have "
                       "heard of this fault")
    return Verdict(
        scenario=obs.scenario,
        passed=not reasons,
        reasons=tuple(reasons),
        runs_total=len(triggered),
        runs_succeeded=runs_succeeded,
        runs_failed=runs_failed,
        runs_lost=runs_lost,
        runs_stuck=runs_stuck,
        tasks_total=len(triggered) * obs.tasks_per_run,
        tasks_lost=tasks_lost,
        tasks_stuck=tasks_stuck,
        tasks_failed=tasks_failed,
        tasks_hit=len(hit),
        recovery_s=recovery,
        interrupted_done_s=interrupted_done,
        component_back_s=back,
        restarts=restarts,
        meets_target=recovery is not None and recovery <= target_recovery_s,
        committed_lost=committed_lost,
        fault_detail=obs.fault_detail,
        alerts=obs.alerts,
        alerts_missing=alerts_missing,
        alerts_standing=obs.alerts_standing,
    )


def summary_lines(v: Verdict) -> list[str]:
    """The verdict as lines a person reads at the end of `airscale drill`."""
    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}s"

    lines = [
        f"drill {v.scenario}: {'PASS' if v.passed else 'FAIL'}",
        f"  fault:               {v.fault_detail}",
        f"  DAG runs:            {v.runs_succeeded}/{v.runs_total} succeeded, {v.runs_failed} failed, "
        f"{v.runs_lost} lost, {v.runs_stuck} stuck",
        f"  task instances:      {v.tasks_total} expected, {v.tasks_lost} lost, {v.tasks_stuck} stuck, "
        f"{v.tasks_failed} failed, {v.committed_lost} committed success(es) lost",
        f"  hit by the fault:    {v.tasks_hit} task(s) ran again or failed",
        f"  recovery:            next task done {s(v.recovery_s)} after the fault "
        f"({'within' if v.meets_target else 'OVER'} target); interrupted tasks done {s(v.interrupted_done_s)}; "
        f"component healthy {s(v.component_back_s)}",
        "  restarts:            " + (", ".join(f"{k} +{n}" for k, n in v.restarts.items()) or "none"),
    ]
    lines.append("  alerts fired:        " + (", ".join(v.alerts) or "none")
                 + (f"; still firing from before: {', '.join(v.alerts_standing)}" if v.alerts_standing else ""))
    for r in v.reasons:
        lines.append(f"  ! {r}")
    return lines
