"""The local actuator: the only code that starts or stops a worker.

Scale-up starts STANDBY worker processes through supervisord (or takes back a draining one
with Celery's `add_consumer`). Scale-down is drain-first and spread over loop iterations so the
loop never blocks on a long task:

1. `cancel_consumer(queue, destination=[node])`: the worker stops taking messages from the
   queue but keeps running what it holds;
2. every iteration, `progress()` reads its active and reserved tasks; once it holds none (and
   the DB shows no task instance running on it), the tasks are re-read one last time and the
   process is stopped warm; after `workers.drain_timeout` it is stopped anyway;
3. every stop is appended to the stops file with what the worker held at that moment.

Every start is timed from the supervisord start to the first answer on Celery's control API
(the starts file): the recent start-up times tell the policy how early to pre-warm.

The drain state lives in the workers themselves (a running worker not consuming its queue is
draining), so a restarted autoscaler picks up drains where it left them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from airscale.autoscale import records
from airscale.autoscale.plan import (
    Action,
    DrainVerdict,
    Verb,
    WorkerState,
    WorkerView,
    drain_verdict,
)
from airscale.autoscale.memory_sampler import MemorySampler
from airscale.autoscale.signals import QueueSnapshot, Signals, node_name
from airscale.runtime.layout import Layout
from airscale.runtime.supervisor import Supervisor
from airscale.spec import Spec
from airscale.tuning.autoscaling import Measured, fit_memory

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# A drained worker is stopped no sooner than this after its consumer was cancelled.
DRAIN_SETTLE_S = 2.0
CONTROL_REPLY_TIMEOUT_S = 3.0
# The pre-warm lead follows the slowest of this many recent start-ups of the queue's workers:
# start-up varies with the host's load, and a late pre-warm costs queue wait.
STARTUPS_KEPT = 5
# A start that never answers within this long is forgotten (failed; supervisord backs it off).
START_GIVE_UP_S = 300.0


def total_memory_mib() -> float:
    return psutil.virtual_memory().total / MIB


def available_memory_mib() -> float:
    return psutil.virtual_memory().available / MIB


def startup_estimate(recent: list[float]) -> float | None:
    """The start-up time the pre-warm plans with: the slowest recent one (None: none measured)."""
    return max(recent) if recent else None


@dataclass(frozen=True)
class StartRecord:
    at: float  # when the worker first answered
    queue: str
    worker: str
    startup_s: float  # from supervisord start to the first answer (resolution: one iteration)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StopRecord:
    at: float
    queue: str
    worker: str
    reason: str  # drained | drain-timeout
    active_tasks: int | None  # Celery's count at the moment of the stop (None: no answer)
    reserved_tasks: int | None
    db_running_tasks: int  # task instances the DB showed running on the worker
    drain_seconds: float
    busy_at_drain_start: int | None  # tasks it held when told to stop consuming

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class LocalActuator:
    def __init__(
        self,
        spec: Spec,
        signals: Signals,
        supervisor: Supervisor,
        layout: Layout,
        dry_run: bool = False,
        clock: Callable[[], float] = time.time,
    ):
        self.spec = spec
        self.signals = signals
        self.supervisor = supervisor
        self.layout = layout
        self.dry_run = dry_run
        self.clock = clock
        self.drain_started: dict[str, float] = {}
        self.drain_busy: dict[str, int | None] = {}
        self.start_requested: dict[str, float] = {}
        # Recent start-ups per queue, from the starts file: a restarted autoscaler keeps its lead.
        self.startups: dict[str, deque[float]] = {}
        for rec in records.read_jsonl(records.starts_file(layout))[-STARTUPS_KEPT * 8:]:
            self.startups.setdefault(rec["queue"], deque(maxlen=STARTUPS_KEPT)).append(float(rec["startup_s"]))
        # Recent drains that ended idle, all queues: the derived stabilization window uses them.
        self.drains: deque[float] = deque(
            (float(r["drain_seconds"]) for r in records.read_jsonl(records.stops_file(layout))[-STARTUPS_KEPT * 8:]
             if r.get("reason") == DrainVerdict.STOP_IDLE.value), maxlen=STARTUPS_KEPT)
        self.memory = MemorySampler(spec, supervisor, layout, clock)

    def startup_s(self, queue: str) -> float | None:
        return startup_estimate(list(self.startups.get(queue, ())))

    def measured(self) -> Measured:
        """The start-ups and drains timed so far and the workers' memory sampled, for the derived
        settings (tuning.autoscaling)."""
        return Measured(startups=tuple(s for d in self.startups.values() for s in d),
                        drains=tuple(self.drains), total_memory_mib=total_memory_mib(),
                        memory=fit_memory(list(self.memory.samples)))

    def sample_memory(self, snap) -> list[dict]:
        return [] if self.dry_run else self.memory(snap)

    # -- scale up and start of scale-down -------------------------------------------------
    def apply(self, queue: str, actions: list[Action], views: tuple[WorkerView, ...] = ()) -> list[str]:
        busy = {w.name: w.busy for w in views}
        done = []
        for a in actions:
            if self.dry_run:
                done.append(f"would {a.verb.value} {a.worker}")
                continue
            if a.verb is Verb.START:
                self.supervisor.start(a.worker)
                self.start_requested[a.worker] = self.clock()
            elif a.verb is Verb.DRAIN:
                if not self._control("cancel_consumer", queue, a.worker):
                    log.warning("%s did not confirm it stopped consuming %s; will retry", a.worker, queue)
                    continue
                self.drain_started[a.worker] = self.clock()
                self.drain_busy[a.worker] = busy.get(a.worker)
            elif a.verb is Verb.UNDRAIN:
                if not self._control("add_consumer", queue, a.worker):
                    log.warning("%s did not confirm it consumes %s again; will retry", a.worker, queue)
                    continue
                self.drain_started.pop(a.worker, None)
            done.append(f"{a.verb.value} {a.worker}")
        return done

    def _control(self, command: str, queue: str, worker: str) -> bool:
        control = self.signals.app.control
        replies = getattr(control, command)(
            queue, destination=[node_name(worker)], reply=True, timeout=CONTROL_REPLY_TIMEOUT_S
        ) or []
        for reply in replies:
            for answer in reply.values():
                if "ok" in answer:
                    return True
        return False

    # -- end of scale-down ------------------------------------------------------------------
    def progress(self, snap: QueueSnapshot) -> list[StopRecord]:
        """Time the queue's starts that answered; stop its drained workers (returned)."""
        now = self.clock()
        self._time_starts(snap, now)
        draining = [w for w in snap.workers if w.state is WorkerState.DRAINING]
        mine = {w.name for w in snap.workers}
        for name in (set(self.drain_started) & mine) - {w.name for w in draining}:
            self.drain_started.pop(name)  # taken back, stopped, or gone
            self.drain_busy.pop(name, None)
        stops = []
        for w in draining:
            started = self.drain_started.setdefault(w.name, now)  # found after a restart
            verdict = drain_verdict(w.busy, now - started, self.spec.workers.drain_timeout, DRAIN_SETTLE_S)
            if verdict is DrainVerdict.WAIT or self.dry_run:
                continue
            # Read again right before the stop: the snapshot may be seconds old.
            fresh = self.signals.busy(w.name)
            db_running = self.signals.running_on(w.name)
            if verdict is DrainVerdict.STOP_IDLE and (fresh is None or sum(fresh) > 0 or db_running > 0):
                continue
            self.supervisor.stop(w.name)
            rec = StopRecord(
                at=self.clock(), queue=snap.queue, worker=w.name, reason=verdict.value,
                active_tasks=fresh[0] if fresh else None, reserved_tasks=fresh[1] if fresh else None,
                db_running_tasks=db_running, drain_seconds=round(self.clock() - started, 3),
                busy_at_drain_start=self.drain_busy.pop(w.name, None),
            )
            records.append_jsonl(records.stops_file(self.layout), rec.as_dict())
            if verdict is DrainVerdict.STOP_IDLE:
                self.drains.append(rec.drain_seconds)
            self.drain_started.pop(w.name, None)
            (log.info if verdict is DrainVerdict.STOP_IDLE else log.warning)(
                "stopped %s (%s after %.1fs, held %s task(s) when drained): active=%s reserved=%s db_running=%d",
                w.name, verdict.value, rec.drain_seconds, rec.busy_at_drain_start, rec.active_tasks,
                rec.reserved_tasks, db_running,
            )
            stops.append(rec)
        return stops

    def _time_starts(self, snap: QueueSnapshot, now: float) -> list[StartRecord]:
        out = []
        for w in snap.workers:
            started = self.start_requested.get(w.name)
            if started is None:
                continue
            if w.state in (WorkerState.SERVING, WorkerState.DRAINING):
                rec = StartRecord(now, snap.queue, w.name, round(now - started, 2))
                self.start_requested.pop(w.name)
                self.startups.setdefault(snap.queue, deque(maxlen=STARTUPS_KEPT)).append(rec.startup_s)
                if not self.dry_run:
                    records.append_jsonl(records.starts_file(self.layout), rec.as_dict())
                log.info("%s answers %.1fs after its start", w.name, rec.startup_s)
                out.append(rec)
            elif now - started > START_GIVE_UP_S:
                self.start_requested.pop(w.name)
        return out

    def undrain_all(self, snaps: dict[str, QueueSnapshot]) -> None:
        """On shutdown: workers left draining would sit idle until the next autoscaler."""
        if self.dry_run:
            return
        for snap in snaps.values():
            for w in snap.workers:
                if w.state is WorkerState.DRAINING:
                    try:
                        self._control("add_consumer", snap.queue, w.name)
                    except Exception as e:  # best effort on the way out
                        log.warning("could not take back %s: %s", w.name, e)
