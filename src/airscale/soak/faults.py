"""The fault injector: carries out the planned faults (airscale.soak.schedule) on a live cluster
and watches each one until it has healed.

The faults are the drills' (airscale.drills.scenarios): kill -9 of a component's process tree
through the PID its supervisor reports, the Redis kill, and in the `ha` profile the freeze and
kill of the PostgreSQL primary node. A worker is killed only in the middle of tasks (the one
running the most); the target among several components of a kind is the schedule's `pick`.
Faults overlap as they come: a new one does not wait for the last to heal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airscale.drills import runner as drill_runner
from airscale.drills import scenarios
from airscale.runtime.cluster import Cluster
from airscale.runtime.supervisor import RUNNING
from airscale.soak import schedule
from airscale.soak.verdict import FaultObs

# The component kind each planned fault kind picks from.
KIND_OF = {schedule.SCHEDULER: "scheduler", schedule.WORKER: "worker", schedule.API_SERVER: "api-server",
           schedule.DAG_PROCESSOR: "dag-processor", schedule.TRIGGERER: "triggerer"}
RECOVERY_TIMEOUT_S = 600.0
# A fault whose target is not there at its planned time (no worker in the middle of a task, the
# only scheduler already down) is tried again every second for this long, then reported as
# not injected: with short tasks a moment with no task running is common, and skipping then
# lost one worker kill of two in an hour's soak.
TARGET_WAIT_S = 120.0


def _running(cluster: Cluster, kind: str) -> list[str]:
    infos = cluster.supervisor.infos()
    return [c.name for c in cluster.components()
            if c.kind == kind and infos.get(c.name, {}).get("statename") == RUNNING]


def busy_workers(cluster: Cluster) -> dict[str, int]:
    """Running task instances per worker component, from task_instance.hostname."""
    rows = cluster.query("SELECT hostname, count(*) FROM task_instance WHERE state = 'running' GROUP BY hostname")
    return {(h or "").split(".", 1)[0]: n for h, n in rows}


def inject(cluster: Cluster, planned: schedule.PlannedFault) -> scenarios.Fault | None:
    """Carry out one planned fault; None when it has no target now (nothing of that kind runs,
    or no worker is in the middle of a task)."""
    k = planned.kind
    if k == schedule.REDIS:
        return scenarios.redis_kill(cluster)
    if k == schedule.POSTGRES_PRIMARY:
        return scenarios.database_failover(cluster)
    running = _running(cluster, KIND_OF[k])
    busy = busy_workers(cluster) if k == schedule.WORKER else {}
    candidates = [w for w in running if busy.get(w, 0) > 0] if k == schedule.WORKER else running
    name = schedule.choose(candidates, planned.pick)
    if name is None:
        return None
    n = len(running)
    what = f"the worker running {busy[name]} task(s)," if k == schedule.WORKER \
        else ("the" if n == 1 else f"one of {n} {KIND_OF[k]}s,")
    return scenarios.kill_component(cluster, name, what)


def recovered(cluster: Cluster, fault: scenarios.Fault) -> bool:
    if fault.recovered is not None:
        try:
            return fault.recovered()
        except Exception:  # noqa: BLE001 - unreadable is "not yet"
            return False
    return drill_runner.component_healthy(cluster, fault.component, fault.old_pid)


class Injector:
    """Injects the planned faults at their times (from `t0`, epoch) in a thread, and watches each
    until it has recovered."""

    def __init__(self, cluster: Cluster, planned: list[schedule.PlannedFault], t0: float,
                 progress: Callable[[str], None] = lambda _: None):
        self.cluster, self.planned, self.t0, self.progress = cluster, planned, t0, progress
        self.faults: list[FaultObs] = []
        self.skipped: list[tuple[schedule.PlannedFault, str]] = []
        self._pending: list[tuple[str, scenarios.Fault]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)

    def start(self) -> Injector:
        self._thread.start()
        return self

    def stop(self, wait_recovery_s: float = RECOVERY_TIMEOUT_S) -> list[FaultObs]:
        """Stop injecting; wait up to `wait_recovery_s` for the faults still healing."""
        # The thread first (it injects nothing more), then this caller alone watches.
        self._stop.set()
        self._thread.join(timeout=120)
        deadline = time.time() + wait_recovery_s
        while self._pending_count() and time.time() < deadline:
            self._watch()
            time.sleep(1.0)
        with self._lock:
            for kind, f in self._pending:
                self.faults.append(FaultObs(kind, f.component, f.at, f.detail, None))
            self._pending.clear()
            return sorted(self.faults, key=lambda f: f.at)

    def _pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        queue = sorted(self.planned, key=lambda p: p.at_s)
        while not self._stop.is_set():
            now = time.time()
            later: list[schedule.PlannedFault] = []  # due, but without a target yet
            while queue and self.t0 + queue[0].at_s <= now:
                p = queue.pop(0)
                try:
                    fault = inject(self.cluster, p)
                except Exception as e:  # noqa: BLE001 - a fault that could not be injected is reported
                    self.skipped.append((p, f"{e.__class__.__name__}: {e}"))
                    self.progress(f"fault {p.kind} at {p.at_s:.0f}s not injected: {e}")
                    continue
                if fault is None:
                    if now - (self.t0 + p.at_s) < TARGET_WAIT_S:
                        later.append(p)  # its target may be there in a second
                        continue
                    self.skipped.append((p, f"no target for {TARGET_WAIT_S:.0f}s"))
                    self.progress(f"fault {p.kind} at {p.at_s:.0f}s: no target for {TARGET_WAIT_S:.0f}s")
                    continue
                self.progress(f"fault at {p.at_s:.0f}s: {fault.detail}")
                with self._lock:
                    self._pending.append((p.kind, fault))
            queue = later + queue
            self._watch()
            self._stop.wait(1.0)

    def _watch(self) -> None:
        with self._lock:
            pending = list(self._pending)
        for kind, f in pending:
            if recovered(self.cluster, f):
                obs = FaultObs(kind, f.component, f.at, f.detail, time.time())
                self.progress(f"{f.component} recovered after {obs.recovery_s:.1f}s")
                with self._lock:
                    self._pending.remove((kind, f))
                    self.faults.append(obs)
