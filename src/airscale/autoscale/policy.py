"""How many workers a queue should have: pure decisions, no I/O, the clock passed in.

The shape follows the Kubernetes HPA (pkg/controller/podautoscaler): a raw recommendation
from the load, then normalisation in small steps that each may change it, and a reason that
says which step had the last word.

    demand      = max(queued + running in the metadata DB, broker depth + tasks held by workers)
    raw         = ceil(demand / concurrency), kept at `current` inside the tolerance band,
                  raised to the forecast (pre-warm) for the scheduled runs due within the
                  pre-warm lead: the measured worker start-up time plus two intervals and a
                  slack, at most `prewarm_lookahead` (the whole look-ahead while no start has
                  been measured yet)
    recommended = raw bounded by [floor, max_workers]       (floor 0 only with scale_to_zero
                                                             and nothing to do)
    stabilized  = scale up to `recommended` at once; scale down only to the highest
                  recommendation of the last `stabilization_window` seconds (HPA behaviour:
                  a wave of load that pauses for a minute does not lose its workers)
    desired     = stabilized, at most `scale_up_max_step` above current, bounded again,
                  and above max(current, min_workers) only as many workers as the available
                  memory takes with every new slot running a task, above `memory_floor_mib`
                  (reason MemoryHeadroom)

Stabilization protects against load nobody announced coming back. Load the forecast announced
(tasks of scheduled DAG runs) has a known end: while a scheduled run that touches the queue is
in progress the window holds everything, as the HPA does; once none is, only the
recommendations for the unannounced part of the load (demand minus the scheduled runs' tasks)
hold workers, so workers pre-warmed for a scheduled burst go as soon as the burst is done,
and the next run is pre-warmed for again.

History (the recommendations inside the window) is data passed in and returned, so a
decision depends on nothing but its arguments and the table tests can replay any sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from airscale.spec import Spec
from airscale.tuning.autoscaling import AutoscalingPlan, MemoryFigures


class Reason(str, Enum):
    """Why a decision came out as it did (exported as a metric label, so keep the set small)."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    PREWARM = "Prewarm"
    SCALE_UP_LIMITED = "ScaleUpLimited"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    WITHIN_TOLERANCE = "WithinTolerance"
    AT_MAX = "AtMax"
    AT_MIN = "AtMin"
    BELOW_MIN = "BelowMin"
    ABOVE_MAX = "AboveMax"
    SCALE_TO_ZERO = "ScaleToZero"
    SCHEDULED_DONE = "ScheduledRunsDone"
    MEMORY_HEADROOM = "MemoryHeadroom"
    STEADY = "Steady"


# Added to the measured start-up time in the pre-warm lead: start-ups vary on a loaded host.
PREWARM_SLACK_S = 5.0


@dataclass(frozen=True)
class QueuePolicy:
    min_workers: int
    max_workers: int
    concurrency: int
    tolerance: float = 0.1
    scale_up_max_step: int = 2
    stabilization_window: float = 300.0
    scale_to_zero: bool = False
    interval: float = 5.0  # seconds between decisions
    prewarm_lookahead: float = 120.0  # the most the pre-warm looks ahead (0: no pre-warm)
    memory_floor_mib: float = 0.0  # available memory a start may not cross (0: no check)
    worker_mib: float = 0.0  # one more worker with every slot running a task

    def prewarm_lead(self, startup_s: float | None) -> float:
        """Seconds ahead of a scheduled run its workers are started.

        A worker must answer when the run's tasks are queued: its start-up time, plus up to
        one interval before the loop sees the run inside the lead and one more for the decision
        to act, plus a slack. Without a measured start-up (no worker started yet) the whole
        look-ahead is used: too early costs worker-seconds, too late costs queue wait.
        """
        if startup_s is None:
            return self.prewarm_lookahead
        return min(self.prewarm_lookahead, startup_s + 2 * self.interval + PREWARM_SLACK_S)

    @classmethod
    def from_spec(cls, spec: Spec, queue: str, derived: AutoscalingPlan,
                  memory: MemoryFigures = MemoryFigures()) -> QueuePolicy:
        """The queue's policy: bounds from the spec, the rest as `derived` (spec values win)."""
        q, a = spec.queues[queue], spec.autoscaling
        return cls(
            min_workers=q.min_workers, max_workers=q.max_workers, concurrency=q.concurrency,
            tolerance=a.tolerance, scale_up_max_step=int(derived.value("scale_up_max_step")),
            stabilization_window=derived.value("stabilization_window"), scale_to_zero=a.scale_to_zero,
            interval=derived.value("interval"), prewarm_lookahead=a.prewarm_lookahead,
            memory_floor_mib=derived.value("memory_floor_mib"), worker_mib=memory.worker_mib(q.concurrency),
        )


@dataclass(frozen=True)
class Due:
    """A scheduled DAG run the forecast sees coming, with its tasks for one queue."""

    in_s: float  # seconds until the run is due (negative: due, not created yet)
    tasks: int


@dataclass(frozen=True)
class Observation:
    """What the signals say about one queue at one moment."""

    current: int  # workers serving the queue: running or starting, not draining
    queued: int = 0  # task instances queued for the queue (metadata DB)
    running: int = 0  # task instances running from the queue (metadata DB)
    broker_depth: int | None = None  # messages waiting in the broker (None: not read)
    worker_busy: int | None = None  # tasks active or reserved on the queue's workers
    due: tuple[Due, ...] = ()  # scheduled runs due within the look-ahead
    scheduled: int = 0  # of queued + running: tasks of scheduled DAG runs (announced load)
    scheduled_runs: int = 0  # scheduled DAG runs in progress that touch the queue
    startup_s: float | None = None  # recent worker start-up time, start to first answer
    # Memory available for new workers (MiB): the machine's available memory less what the
    # free slots of workers already up will take once they run tasks (None: not read).
    memory_available_mib: float | None = None

    @property
    def forecast(self) -> int:
        """Tasks of the runs due within the whole look-ahead."""
        return sum(d.tasks for d in self.due)

    def forecast_within(self, lead: float) -> int:
        return sum(d.tasks for d in self.due if d.in_s <= lead)

    @property
    def demand(self) -> int:
        """Tasks that want a slot now. Both sources count the same tasks; the larger wins,
        so a lagging database (or a broker read that failed) never hides load."""
        db = self.queued + self.running
        if self.broker_depth is None or self.worker_busy is None:
            return db
        return max(db, self.broker_depth + self.worker_busy)


@dataclass(frozen=True)
class Recommendation:
    at: float
    workers: int
    unannounced: int | None = None  # for the load no forecast announced (None: same as workers)

    @property
    def held(self) -> int:
        """What this recommendation holds once no scheduled run is in progress."""
        return self.workers if self.unannounced is None else self.unannounced


History = tuple[Recommendation, ...]


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    reason: Reason
    message: str
    demand: int
    history: History  # pass to the next call for the same queue

    @property
    def delta(self) -> int:
        return self.desired - self.current


def memory_for_new_workers(available_mib: float, concurrency: int, busy: list[int | None],
                           starting: int, memory: MemoryFigures) -> float:
    """Available memory left for new workers of a queue: the machine's available memory less
    what its workers already up will still take, each free slot running a task (a worker that
    did not answer counts as idle) and each starting worker its idle pool."""
    free_slots = sum(concurrency - min(concurrency, b or 0) for b in busy)
    return (available_mib - free_slots * memory.running_task_mib
            - starting * memory.worker_mib(concurrency, busy=0))


def _workers_for(tasks: int, concurrency: int) -> int:
    return math.ceil(tasks / concurrency) if tasks > 0 else 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def recommend(obs: Observation, policy: QueuePolicy, history: History, now: float) -> Decision:
    p, current = policy, obs.current
    demand = obs.demand
    slots = f"{_plural(p.concurrency, 'slot')} each"
    load = f"{_plural(demand, 'task')} queued or running"

    # 1. raw recommendation from the load, with the tolerance band.
    raw = _workers_for(demand, p.concurrency)
    in_tolerance = False
    if current > 0 and raw != current and demand > 0:
        ratio = demand / (current * p.concurrency)
        if abs(ratio - 1.0) <= p.tolerance:
            raw, in_tolerance = current, True
    # 2. pre-warm: runs due soon need their workers before they start, not after; "soon" is
    # as long as a worker takes to start (measured), not the whole look-ahead.
    lead = p.prewarm_lead(obs.startup_s)
    forecast = obs.forecast_within(lead)
    prewarm = _workers_for(forecast, p.concurrency)
    prewarm_drives = prewarm > raw
    raw = max(raw, prewarm)

    # 3. bounds. The floor drops to 0 only when scale-to-zero is on and there is nothing to do.
    idle = demand == 0 and obs.forecast == 0
    floor = 0 if (p.scale_to_zero and idle) else p.min_workers
    recommended = min(max(raw, floor), p.max_workers)
    # Unannounced load is counted in the metadata DB alone: `scheduled` comes from it, and the
    # broker and the workers are read a second or two later, so in a scheduled burst their
    # larger count is the same run's next tasks, not load nobody announced.
    unannounced_tasks = max(0, obs.queued + obs.running - obs.scheduled)
    unannounced = min(max(_workers_for(unannounced_tasks, p.concurrency), floor), recommended)

    # 4. stabilization: remember this recommendation, scale down only to the window's highest.
    # Without history (a fresh or restarted autoscaler) the current size counts as recommended
    # now: workers it has not watched for a whole window are not dropped at once. With no
    # scheduled run in progress, recommendations hold only what unannounced load needed.
    history = history or (Recommendation(now, current),)
    window = tuple(r for r in history if now - r.at < p.stabilization_window)
    window += (Recommendation(now, recommended, unannounced),)
    held_all = max(r.workers for r in window)
    # (the pre-warm and the announced load of now are in `recommended`, never cut below it)
    highest = held_all if obs.scheduled_runs > 0 else max(recommended, *(r.held for r in window))
    stabilized = current
    if stabilized < recommended:
        stabilized = recommended
    if stabilized > highest:
        stabilized = highest

    # 5. scale-up rate limit, then the bounds again (a current outside them is corrected).
    desired = stabilized
    limited = desired > current + p.scale_up_max_step
    if limited:
        desired = current + p.scale_up_max_step
    desired = min(max(desired, floor), p.max_workers)
    # A limited step may still have reached the floor: then the floor is the reason.
    limited = limited and desired == current + p.scale_up_max_step
    # 6. memory: a worker above min_workers starts only if, with all its slots busy, the
    # available memory stays above the floor (min_workers are the spec's promise, which
    # `validate` checked against the machine's memory).
    memory_held = False
    base = max(current, floor)
    if desired > base and obs.memory_available_mib is not None and p.worker_mib > 0:
        fit = max(0, math.floor((obs.memory_available_mib - p.memory_floor_mib) / p.worker_mib))
        if desired > base + fit:
            desired, memory_held, limited = base + fit, True, False

    need = (f"{load} {'needs' if demand == 1 else 'need'} "
            f"{_plural(_workers_for(demand, p.concurrency), 'worker')} of {slots}")
    if current < floor and desired == floor and not limited and raw < floor:
        reason, msg = Reason.BELOW_MIN, f"only {current} running, below min_workers {floor}: starting up to {floor}"
    elif current > p.max_workers:
        reason, msg = Reason.ABOVE_MAX, f"{current} running, above max_workers {p.max_workers}: going down to {desired}"
    elif memory_held:
        reason = Reason.MEMORY_HEADROOM
        msg = (f"{need} (recommended {recommended}); {obs.memory_available_mib:.0f} MiB available for new "
               f"workers, a worker with all {slots.replace(' each', '')} busy takes {p.worker_mib:.0f} MiB and "
               f"{p.memory_floor_mib:.0f} MiB must stay free: {current} -> {desired}")
    elif limited:
        reason = Reason.SCALE_UP_LIMITED
        msg = (f"{need} (recommended {recommended}); adding at most {p.scale_up_max_step} "
               f"per decision: {current} -> {desired}")
    elif desired < current and stabilized > recommended:
        reason = Reason.SCALE_DOWN_STABILIZED
        msg = (f"{need}; scaling down only to {desired}, the highest recommendation of the last "
               f"{p.stabilization_window:.0f}s")
    elif desired == current and recommended < current:
        reason = Reason.SCALE_DOWN_STABILIZED
        msg = (f"{need}, recommending {recommended}; keeping {current}: the last "
               f"{p.stabilization_window:.0f}s recommended up to {highest}")
    elif desired < current and held_all > desired:
        # Only possible with no scheduled run in progress (otherwise the whole window holds).
        reason = Reason.SCHEDULED_DONE
        msg = (f"{need}; the scheduled runs are done, and the workers held for them are not kept "
               f"for the {p.stabilization_window:.0f}s window (the next run is pre-warmed for): "
               f"{current} -> {desired}")
    elif desired > current and prewarm_drives:
        reason = Reason.PREWARM
        msg = (f"{_plural(forecast, 'task')} of DAG runs due within {lead:.0f}s (worker start-up "
               + (f"{obs.startup_s:.0f}s" if obs.startup_s is not None else "not measured yet")
               + f") need {prewarm} {'worker' if prewarm == 1 else 'workers'}: pre-warming {current} -> {desired}")
    elif desired > current:
        reason, msg = Reason.SCALE_UP, f"{need}: {current} -> {desired}"
    elif desired < current and desired == 0:
        reason, msg = Reason.SCALE_TO_ZERO, f"nothing queued, running or due for {p.stabilization_window:.0f}s: scaling to zero"
    elif desired < current:
        reason, msg = Reason.SCALE_DOWN, f"{need}: {current} -> {desired}"
    elif _workers_for(max(demand, forecast), p.concurrency) > p.max_workers:
        reason, msg = Reason.AT_MAX, f"{need}; holding at max_workers {p.max_workers}"
    elif prewarm_drives and desired == current:
        reason = Reason.STEADY
        msg = (f"{_plural(forecast, 'task')} of DAG runs due within {lead:.0f}s need {prewarm} "
               f"{'worker' if prewarm == 1 else 'workers'}: keeping {current} pre-warmed")
    elif in_tolerance:
        reason = Reason.WITHIN_TOLERANCE
        msg = (f"{load} on {current * p.concurrency} slots is within the tolerance of "
               f"{p.tolerance:.0%}: keeping {current}")
    elif desired == floor and (raw < floor or idle):
        reason, msg = Reason.AT_MIN, f"{load}; holding at min_workers {floor}"
    else:
        reason, msg = Reason.STEADY, f"{need}: keeping {current}"
    return Decision(current, desired, reason, msg, demand, window)
