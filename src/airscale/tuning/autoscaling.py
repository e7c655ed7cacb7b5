"""Autoscaling settings the spec leaves empty, derived from what this machine measured (pure).

The autoscaler times every worker start (supervisord start to first answer on Celery's control
API) and every drain (consumer cancelled to process stopped); `derive` turns those figures into
the interval, stabilization window and scale-up step, each with the figure it came from.
A value set in the spec wins (field present = override, absent = derived).

Why the window can be short: scale-down is drain-first (a worker stops consuming, finishes what
it holds, then stops), so removing a worker too early costs one start-up of queue wait when load
comes back, never a killed task. The Kubernetes HPA's 300 s default protects pods that are
killed on scale-down. Holding an idle worker for a few start-ups bounds the waste of a
premature removal (the ski-rental argument) while the drain itself is a grace period: a draining
worker is taken back without a start, so the drain time is subtracted from the window.

Memory: `check_memory` refuses a spec whose queues at max_workers x concurrency, with every
slot running a task, plus the cluster's own processes would not fit the machine with headroom.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from airscale.errors import AirscaleError
from airscale.spec import Spec

# Where the autoscaler records its measurements, under the data dir's state/ folder
# (autoscale/records.py writes them; `airscale plan` reads them).
STARTS_FILE = "autoscaler-starts.jsonl"
STOPS_FILE = "autoscaler-stops.jsonl"
RECENT = 5  # the measurements a derivation uses: the last few, the host's load changes

# Without a measured start-up (no worker started yet): BENCHMARKS.md saw 1-13 s on the
# 2-core machine, the slower end while the machine was loaded.
ASSUMED_STARTUP_S = 10.0
WINDOW_STARTUPS = 4  # the window holds an idle worker this many start-ups
MIN_WINDOW_S = 20.0  # below this the window is shorter than one busy polling cycle of a burst
MAX_WINDOW_S = 300.0  # the HPA's default: never longer than what operators know
INTERVAL_STARTUPS = 1 / 3  # decide a few times per start-up: more often sees the same starts
MIN_INTERVAL_S, MAX_INTERVAL_S = 2.0, 5.0

# Memory of a Celery worker (PSS, MiB), measured on this machine (2 cores, 24 GiB, Airflow
# 3.3.2) on a cluster of 2 schedulers and one worker of 4 slots, once idle and once with all 4
# slots running a task (a mapped task that sleeps):
#   python scripts/measure_worker_memory.py -s SPEC --worker worker-default-1
# idle: worker 49.2 + log server 42.4 + forkserver client 7.6; pool processes 38.4, 38.4, 38.4,
# 38.1; tree 252.6. Busy: tree 415.3, each task process 41.0 and its pool process +1.2.
WORKER_PARENT_MIB = 100.0  # the worker, its log server and its forkserver client
IDLE_SLOT_MIB = 38.5  # one pool process waiting for a task
RUNNING_TASK_MIB = 41.0  # the task process of a running task (+ its pool process' growth)
# The cluster's own processes with no worker (api-server, dag-processor, triggerer, PostgreSQL,
# Redis, the monitoring stack, fork server, liveness, reclaimer) and 2 schedulers of 147 MiB
# each: 1262 MiB summed PSS by the same script. Without the schedulers, + the autoscaler
# (~55 MiB, as liveness) and a margin:
CLUSTER_MIB = 1100.0  # with one api-server
SCHEDULER_MIB = 150.0
# Each api-server past the first (spec api_server.count, airscale.runtime.api_servers), and the
# HAProxy in front of them: PSS measured by `airscale soak` on this machine (2026-12-06, 20 min
# of load: 287-296 MiB per api-server instance, HAProxy 9-11 MiB), rounded up.
API_SERVER_MIB = 300.0
API_PROXY_MIB = 15.0
MEMORY_HEADROOM = 0.15  # share of the machine's memory a spec may not plan to use
FLOOR_SHARE, MIN_FLOOR_MIB = 0.10, 512


# The running autoscaler samples its workers' PSS (autoscale/memory_sampler.py) into this file;
# the figures above are refitted from the last samples (fit_memory) once there are enough.
MEMORY_FILE = "autoscaler-memory.jsonl"
MEMORY_SAMPLES = 60  # the fit reads the last this many worker samples
MIN_MEMORY_SAMPLES = 3
SANE_SLOT_MIB = (5.0, 4096.0)  # a fitted figure outside this is noise (a worker mid-start): ignored


@dataclass(frozen=True)
class MemoryFigures:
    worker_parent_mib: float = WORKER_PARENT_MIB
    idle_slot_mib: float = IDLE_SLOT_MIB
    running_task_mib: float = RUNNING_TASK_MIB
    cluster_mib: float = CLUSTER_MIB  # without schedulers, with one api-server
    scheduler_mib: float = SCHEDULER_MIB
    source: str = "recorded on the reference machine (BENCHMARKS.md, scripts/measure_worker_memory.py)"
    api_server_mib: float = API_SERVER_MIB
    api_proxy_mib: float = API_PROXY_MIB

    def own_mib(self, schedulers: int, api_servers: int) -> float:
        """The cluster's own processes: the base, each scheduler, each api-server past the first
        and, with two or more, HAProxy."""
        extra = (api_servers - 1) * self.api_server_mib + (self.api_proxy_mib if api_servers > 1 else 0.0)
        return self.cluster_mib + schedulers * self.scheduler_mib + extra

    def worker_mib(self, concurrency: int, busy: int | None = None) -> float:
        """A worker with `busy` of its slots running a task (None: all of them)."""
        busy = concurrency if busy is None else busy
        return self.worker_parent_mib + concurrency * self.idle_slot_mib + busy * self.running_task_mib


@dataclass(frozen=True)
class Measured:
    """What the autoscaler recorded on this machine (empty: nothing measured yet)."""

    startups: tuple[float, ...] = ()  # recent worker start-ups, seconds
    drains: tuple[float, ...] = ()  # recent drains that ended idle, seconds
    total_memory_mib: float | None = None  # psutil.virtual_memory().total
    memory: MemoryFigures = MemoryFigures()

    @property
    def startup_s(self) -> float | None:
        """The slowest recent start-up, as the pre-warm lead uses."""
        return max(self.startups) if self.startups else None

    @property
    def drain_s(self) -> float | None:
        return statistics.median(self.drains) if self.drains else None


def fit_memory(samples: list[dict], prior: MemoryFigures = MemoryFigures()) -> MemoryFigures:
    """An idle slot's and a running task's memory from samples of whole worker trees (pure).

    Each sample is a worker's summed PSS with its `concurrency` and the tasks `active` then:
    tree - parent = concurrency x idle slot + active x running task. Least squares over the
    last `MEMORY_SAMPLES` gives both figures when the samples vary in active/concurrency; when
    they do not (every sample idle, or every one equally busy) the figure they cannot tell
    apart stays the prior's. A figure the fit puts below `SANE_SLOT_MIB` is held there and the
    other refitted; too few samples, or still outside the bounds: the prior."""
    rows = [(float(r["concurrency"]), float(r["active"]), float(r["tree_mib"]) - prior.worker_parent_mib)
            for r in samples[-MEMORY_SAMPLES:] if r.get("concurrency") and r.get("active") is not None]
    if len(rows) < MIN_MEMORY_SAMPLES:
        return prior
    scc = sum(c * c for c, _, _ in rows)
    sbb = sum(b * b for _, b, _ in rows)
    scb = sum(c * b for c, b, _ in rows)
    scy = sum(c * y for c, _, y in rows)
    sby = sum(b * y for _, b, y in rows)
    det = scc * sbb - scb * scb
    busy = sum(b > 0 for _, b, _ in rows)
    if sbb == 0:  # never a task running: the slots only
        slot, task = scy / scc, prior.running_task_mib
    elif det <= 1e-9 * scc * sbb:  # always the same share busy: keep the slot, fit the task
        slot = prior.idle_slot_mib
        task = (sby - slot * scb) / sbb
    else:
        slot = (scy * sbb - sby * scb) / det
        task = (sby * scc - scy * scb) / det
    lo, hi = SANE_SLOT_MIB
    # Pool processes keep what their first tasks took, so an idle worker sampled late can hold
    # more than a busy one sampled early: the free fit then gives a task less than nothing. A
    # figure below the bound is held at it and the other refitted (least squares with it fixed).
    if task < lo:
        task = lo
        slot = (scy - task * scb) / scc
    elif slot < lo:
        slot = lo
        task = (sby - slot * scb) / sbb if sbb else prior.running_task_mib
    if not (lo <= slot <= hi and lo <= task <= hi):
        return prior
    return replace(prior, idle_slot_mib=round(slot, 1), running_task_mib=round(task, 1),
                   source=f"measured on this cluster: {len(rows)} worker samples, {busy} with tasks running")


def measured_from(starts: list[dict], stops: list[dict], total_memory_mib: float | None,
                  memory_samples: list[dict] = ()) -> Measured:
    """The recent start-ups, idle drains and worker memory among the autoscaler's records (pure)."""
    return Measured(
        startups=tuple(float(r["startup_s"]) for r in starts[-RECENT:]),
        drains=tuple(float(r["drain_seconds"]) for r in stops if r.get("reason") == "drained")[-RECENT:],
        total_memory_mib=total_memory_mib,
        memory=fit_memory(list(memory_samples)),
    )


@dataclass(frozen=True)
class Derived:
    key: str  # autoscaling.<key>
    value: float
    source: str  # spec | measured | assumed
    reason: str


@dataclass(frozen=True)
class AutoscalingPlan:
    enabled: bool
    settings: tuple[Derived, ...]
    # What a worker, an idle slot and a running task take (refitted from the running cluster's
    # samples when there are enough): the memory headroom's arithmetic.
    memory: MemoryFigures = MemoryFigures()

    def value(self, key: str) -> float:
        for s in self.settings:
            if s.key == key:
                return s.value
        raise KeyError(key)

    def get(self, key: str) -> Derived:
        return next(s for s in self.settings if s.key == key)


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def derive(spec: Spec, measured: Measured) -> AutoscalingPlan:
    a = spec.autoscaling
    startup, drain = measured.startup_s, measured.drain_s
    basis = "measured" if startup is not None else "assumed"
    start_s = startup if startup is not None else ASSUMED_STARTUP_S
    start_txt = (f"slowest of the last {len(measured.startups)} measured worker start-ups {startup:.1f} s"
                 if startup is not None else
                 f"no worker start measured yet, assumed {ASSUMED_STARTUP_S:g} s (BENCHMARKS.md: 1-13 s)")
    out: list[Derived] = []

    def put(key: str, derived: float, source: str, reason: str) -> None:
        given = getattr(a, key)
        if given is not None:
            out.append(Derived(key, given, "spec", f"set in the spec (derived would be {derived:g})"))
        else:
            out.append(Derived(key, derived, source, reason))

    interval = round(_clamp(start_s * INTERVAL_STARTUPS, MIN_INTERVAL_S, MAX_INTERVAL_S), 1)
    put("interval", interval, basis,
        f"{start_txt}; a decision every third of a start-up ({MIN_INTERVAL_S:g}-{MAX_INTERVAL_S:g} s) "
        "sees a started worker answer soon after it does; a pushed task wakes the loop at once")

    drain_txt = (f"median of the last {len(measured.drains)} measured drains {drain:.1f} s"
                 if drain is not None else "no drain measured yet, counted as 0 s")
    window = round(_clamp(WINDOW_STARTUPS * start_s - (drain or 0.0), MIN_WINDOW_S, MAX_WINDOW_S))
    put("stabilization_window", window, "measured" if startup is not None or drain is not None else "assumed",
        f"{WINDOW_STARTUPS} start-ups ({start_txt}) minus the drain ({drain_txt}), {MIN_WINDOW_S:g}-"
        f"{MAX_WINDOW_S:g} s. Scale-down is drain-first: a worker removed too early costs one start-up "
        "when load returns, never a killed task, and a draining worker is taken back without a start; "
        "the Kubernetes HPA's 300 s exists to protect pods that are killed")

    room = max((q.max_workers - q.min_workers for q in spec.queues.values()), default=1)
    put("scale_up_max_step", max(1, room), "derived",
        f"the largest max_workers - min_workers of the queues ({room}): a burst gets the workers its "
        "backlog needs in one decision; memory_floor_mib holds back a start the memory cannot take")

    total = measured.total_memory_mib
    floor = max(MIN_FLOOR_MIB, round(FLOOR_SHARE * total)) if total else MIN_FLOOR_MIB
    put("memory_floor_mib", floor, "measured" if total else "assumed",
        f"{FLOOR_SHARE:.0%} of the machine's {total / 1024:.1f} GiB, at least {MIN_FLOOR_MIB} MiB" if total
        else f"machine memory unknown: {MIN_FLOOR_MIB} MiB")
    return AutoscalingPlan(bool(a.enabled), tuple(out), measured.memory)


# --- memory fit ------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueMemory:
    name: str
    workers: int
    concurrency: int
    mib: float


@dataclass(frozen=True)
class MemoryFit:
    queues: tuple[QueueMemory, ...]
    cluster_mib: float
    total_mib: float
    headroom: float

    @property
    def need_mib(self) -> float:
        return self.cluster_mib + sum(q.mib for q in self.queues)

    @property
    def budget_mib(self) -> float:
        return self.total_mib * (1 - self.headroom)

    @property
    def fits(self) -> bool:
        return self.need_mib <= self.budget_mib


def memory_fit(spec: Spec, total_mib: float, figures: MemoryFigures = MemoryFigures(),
               headroom: float = MEMORY_HEADROOM) -> MemoryFit:
    """The memory the spec's queues need at max_workers with every slot busy, plus the cluster."""
    qs = tuple(QueueMemory(n, q.max_workers, q.concurrency, q.max_workers * figures.worker_mib(q.concurrency))
               for n, q in spec.queues.items()) if spec.uses_celery else ()
    own = figures.own_mib(spec.schedulers.count, spec.api_server.count or 1)
    return MemoryFit(qs, own, total_mib, headroom)


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def check_memory(spec: Spec, total_mib: float, figures: MemoryFigures = MemoryFigures()) -> MemoryFit:
    """Raise AirscaleError (exit 2) when the spec would not fit this machine's memory."""
    fit = memory_fit(spec, total_mib, figures)
    if fit.fits:
        return fit
    per_slot = figures.idle_slot_mib + figures.running_task_mib
    parts = ", ".join(f"queues.{q.name}: {q.workers} workers x {q.concurrency} slots = {_gib(q.mib)}"
                      for q in sorted(fit.queues, key=lambda q: -q.mib))
    over = fit.need_mib - fit.budget_mib
    biggest = max(fit.queues, key=lambda q: q.mib)
    slots_over = math.ceil(over / per_slot) if per_slot > 0 else 0
    raise AirscaleError(
        f"the spec needs {_gib(fit.need_mib)} of memory with every slot running a task ({parts}; "
        f"the cluster's own processes {_gib(fit.cluster_mib)}; a worker {figures.worker_parent_mib:.0f} MiB "
        f"+ {per_slot:.0f} MiB a busy slot, {figures.source}), but this machine has {_gib(fit.total_mib)}, "
        f"{_gib(fit.budget_mib)} after {fit.headroom:.0%} headroom",
        f"lower queues.{biggest.name}.max_workers or queues.{biggest.name}.concurrency "
        f"(about {slots_over} slots fewer in all), or run the workers on more machines",
    )
