"""The autoscaling benchmark's shapes replayed against the real policy, in simulated time (pure).

`make bench-autoscale` takes about 55 minutes of a real cluster; a policy change can be judged
first here in a second. The replay runs the autoscaler's own decisions (`policy.recommend`,
`plan.plan`, `plan.drain_verdict`, `loop.next_delay`, `tuning.autoscaling.derive`) against an
idealised queue: workers that answer exactly `startup_s` after their start, slots that take the
next task at once (long tasks first, as their priority says), no prefetch, no host noise. So
its figures are what the policy itself allows, not what the cluster measures: when the replay
misses a target, no cluster can meet it with that policy; when it meets one, the bench still
has to show it.

    python -m airscale.bench.autoscale_replay                    # the defaults, every shape
    python -m airscale.bench.autoscale_replay --window 5,10,20   # the window swept
"""

from __future__ import annotations

import argparse
import heapq
import json
from dataclasses import dataclass, field

from airscale.autoscale.actuator import DRAIN_SETTLE_S
from airscale.autoscale.loop import next_delay
from airscale.autoscale.plan import DrainVerdict, Verb, WorkerState, WorkerView, drain_verdict, plan
from airscale.autoscale.policy import Due, History, Observation, QueuePolicy, recommend
from airscale.bench.autoscale_shapes import Shape, shapes
from airscale.bench.autoscale_trace import (
    CONCURRENCY,
    MAX_WORKERS,
    MIN_WORKERS,
    TARGET_P95,
    TARGET_WORKER_SECONDS,
    percentile,
)
from airscale.spec import Spec
from airscale.tuning.autoscaling import Measured, derive

STEP_S = 0.1
STOP_S = 1.0  # a stopped worker's warm shutdown, counted in its worker-seconds
STARTUP_S = 3.0  # the start-ups run H measured on this machine: 2.0-3.4 s
QUEUE = "default"


@dataclass
class _Worker:
    index: int
    state: WorkerState = WorkerState.STANDBY
    since: float = 0.0  # when it entered its state
    slots: list[float] = field(default_factory=list)  # when each busy slot frees

    def busy(self, now: float) -> int:
        return sum(1 for f in self.slots if f > now)


@dataclass(frozen=True)
class Replayed:
    shape: str
    worker_seconds: float
    p95_wait_s: float
    waits: tuple[float, ...]


def _spec(window: float | None) -> Spec:
    autoscaling = {} if window is None else {"stabilization_window": window}
    return Spec.model_validate({
        "cluster": {"name": "replay"}, "autoscaling": autoscaling,
        "queues": {QUEUE: {"min_workers": MIN_WORKERS, "max_workers": MAX_WORKERS, "concurrency": CONCURRENCY}},
    })


def replay(shape: Shape, policy: QueuePolicy | None, startup_s: float = STARTUP_S) -> Replayed:
    """One shape from quiet to quiet; `policy` None: static max (every worker up throughout)."""
    arrivals: list[tuple[float, int, int, float]] = []  # (at, priority rank, order, duration)
    sched_at = 30.0 if shape.scheduled is not None else None
    bursts = list(shape.bursts) + ([shape.scheduled] if shape.scheduled is not None else [])
    for b in bursts:
        at = sched_at if b is shape.scheduled else b.at
        for d in b.long:
            arrivals.append((at, 0, len(arrivals), d))
        for d in b.short:
            arrivals.append((at, 1, len(arrivals), d))
    arrivals.sort()
    scheduled = {i for i, a in enumerate(arrivals) if sched_at is not None and a[0] == sched_at}
    workers = [_Worker(i) for i in range(1, MAX_WORKERS + 1)]
    for w in workers[: MAX_WORKERS if policy is None else MIN_WORKERS]:
        w.state = WorkerState.SERVING
    queue: list[tuple[int, int, float, float]] = []  # heap of (rank, order, arrived, duration)
    running: list[tuple[float, bool]] = []  # (ends, scheduled)
    waits: list[float] = []
    history: History = ()
    worker_seconds, now, nxt, k = 0.0, 0.0, 0.0, 0
    while now < shape.length:
        woke = False
        while k < len(arrivals) and arrivals[k][0] <= now:
            at, rank, order, d = arrivals[k]
            heapq.heappush(queue, (rank, order, at, d))
            k, woke = k + 1, True  # a pushed task wakes the loop (autoscale.wakeup)
        for w in workers:
            if w.state is WorkerState.STARTING and now - w.since >= startup_s:
                w.state, w.since = WorkerState.SERVING, now
            if w.state is WorkerState.DRAINING and drain_verdict(w.busy(now), now - w.since, 1e9,
                                                                DRAIN_SETTLE_S) is DrainVerdict.STOP_IDLE:
                w.state, w.since = WorkerState.STOPPING, now
            if w.state is WorkerState.STOPPING and now - w.since >= STOP_S:
                w.state, w.since, w.slots = WorkerState.STANDBY, now, []
            if w.state is WorkerState.SERVING:
                w.slots = [f for f in w.slots if f > now]
                while len(w.slots) < CONCURRENCY and queue:
                    _, order, at, d = heapq.heappop(queue)
                    waits.append(now - at)
                    w.slots.append(now + d)
                    running.append((now + d, order in scheduled))
        running = [r for r in running if r[0] > now]
        if policy is not None and (woke or now >= nxt):
            views = [WorkerView(f"w{w.index}", QUEUE, w.index, w.state, w.busy(now), 0) for w in workers]
            due = (Due(sched_at - now, len(scheduled)),) if sched_at is not None and 0 < sched_at - now else ()
            in_sched = sum(1 for r in running if r[1]) + sum(1 for q in queue if q[1] in scheduled)
            obs = Observation(
                current=sum(1 for v in views if v.counts_as_capacity), queued=len(queue), running=len(running),
                due=due, scheduled=in_sched, scheduled_runs=1 if in_sched else 0, startup_s=startup_s)
            decision = recommend(obs, policy, history, now)
            history = decision.history
            for action in plan(decision.desired, views):
                w = workers[int(action.worker[1:]) - 1]
                w.state, w.since = {Verb.START: WorkerState.STARTING, Verb.UNDRAIN: WorkerState.SERVING,
                                    Verb.DRAIN: WorkerState.DRAINING}[action.verb], now
            urgent = bool(queue) or any(w.state in (WorkerState.STARTING, WorkerState.DRAINING) for w in workers)
            nxt = now + next_delay(policy.interval, 0, urgent)
        worker_seconds += STEP_S * sum(1 for w in workers if w.state is not WorkerState.STANDBY)
        now = round(now + STEP_S, 6)
    return Replayed(shape.name, round(worker_seconds, 1), round(percentile(waits, 0.95) or 0.0, 2), tuple(waits))


def policy_for(window: float | None = None, startup_s: float = STARTUP_S) -> QueuePolicy:
    """The queue's policy as the autoscaler derives it once it has measured a few start-ups."""
    spec = _spec(window)
    return QueuePolicy.from_spec(spec, QUEUE, derive(spec, Measured(startups=(startup_s,) * 3)))


def compare(shape: Shape, policy: QueuePolicy) -> dict:
    static, auto = replay(shape, None), replay(shape, policy)
    ws = auto.worker_seconds / static.worker_seconds
    p95 = auto.p95_wait_s / static.p95_wait_s if static.p95_wait_s else (1.0 if auto.p95_wait_s == 0 else None)
    met = ws <= TARGET_WORKER_SECONDS and p95 is not None and p95 <= TARGET_P95
    return {"shape": shape.name, "window_s": policy.stabilization_window,
            "static_worker_seconds": static.worker_seconds, "static_p95_s": static.p95_wait_s,
            "worker_seconds": auto.worker_seconds, "p95_s": auto.p95_wait_s,
            "worker_seconds_x": round(ws, 2), "p95_x": None if p95 is None else round(p95, 2), "met": met}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", default="", help="stabilization windows to try, comma-separated (default: derived)")
    ap.add_argument("--startup", type=float, default=STARTUP_S, help="worker start-up, seconds")
    ap.add_argument("--shapes", default="", help="shape names, comma-separated (default: all)")
    ap.add_argument("--json", action="store_true", help="one JSON object per shape and window")
    args = ap.parse_args(argv)
    windows = [float(w) for w in args.window.split(",") if w] or [None]
    wanted = {s for s in args.shapes.split(",") if s}
    rows = [compare(s, policy_for(w, args.startup)) for w in windows for s in shapes()
            if not wanted or s.name in wanted]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"{'shape':<13} {'window':>6} {'static ws':>9} {'p95':>6} {'airscale ws':>11} {'p95':>6} {'ws x':>5} "
          f"{'p95 x':>6}  targets <= {TARGET_WORKER_SECONDS}x / <= {TARGET_P95}x")
    for r in rows:
        p95_x = "inf" if r["p95_x"] is None else f"{r['p95_x']:g}"  # static max never waited
        print(f"{r['shape']:<13} {r['window_s']:>6g} {r['static_worker_seconds']:>9g} {r['static_p95_s']:>6g} "
              f"{r['worker_seconds']:>11g} {r['p95_s']:>6g} {r['worker_seconds_x']:>5g} {p95_x:>6}  "
              + ("met" if r["met"] else "not met"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
