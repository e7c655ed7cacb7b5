"""Figures of one benchmark run, computed from task-instance rows (pure).

Times come from the metadata database (task_instance.queued_dttm, start_date, end_date),
which every component writes with its own clock on one machine, so differences between
them are meaningful to a few milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    state: str | None
    queued: datetime | None
    start: datetime | None
    end: datetime | None


@dataclass
class RunFigures:
    scenario: str
    variant: str
    round: int
    tasks: int
    succeeded: int
    wall_s: float  # first task queued -> last task ended
    throughput: float  # tasks per second over wall_s
    gaps: list[float] = field(default_factory=list)  # chain: next start - previous end
    queue_waits: list[float] = field(default_factory=list)  # start - queued
    scheduler_cpu_s: float = 0.0
    cluster_cpu_s: float = 0.0
    run_state: str = ""
    cpu_by_kind: dict[str, float] = field(default_factory=dict)  # component kind -> CPU s
    loop_ms: list[float] = field(default_factory=list)  # scheduler loop durations during the run

    @property
    def cpu_per_task(self) -> float:
        return self.cluster_cpu_s / self.tasks if self.tasks else math.nan

    def pct(self, which: str, p: float) -> float:
        return percentile(getattr(self, which), p)


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def chain_gaps(rows: list[TaskRow]) -> list[float]:
    """Delay between each task's end and the next task's start, in the order they ran."""
    done = sorted((r for r in rows if r.start and r.end), key=lambda r: r.start)
    return [(b.start - a.end).total_seconds() for a, b in zip(done, done[1:])]


def figures(scenario: str, kind: str, variant: str, rnd: int, rows: list[TaskRow],
            scheduler_cpu_s: float = 0.0, cluster_cpu_s: float = 0.0) -> RunFigures:
    ok = [r for r in rows if r.state == "success"]
    firsts = [r.queued or r.start for r in rows if (r.queued or r.start)]
    ends = [r.end for r in rows if r.end]
    wall = (max(ends) - min(firsts)).total_seconds() if firsts and ends else math.nan
    waits = [(r.start - r.queued).total_seconds() for r in rows if r.start and r.queued]
    return RunFigures(
        scenario=scenario, variant=variant, round=rnd, tasks=len(rows), succeeded=len(ok),
        wall_s=wall, throughput=len(ok) / wall if wall and wall > 0 else math.nan,
        gaps=chain_gaps(rows) if kind == "chain" else [], queue_waits=waits,
        scheduler_cpu_s=scheduler_cpu_s, cluster_cpu_s=cluster_cpu_s,
    )


def median(values: list[float]) -> float:
    return percentile(values, 50)
