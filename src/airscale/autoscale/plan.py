"""Which workers to start, drain or take back to reach a desired count (pure).

A queue's workers are `worker-<queue>-<i>`, i in 1..max_workers, each in one state:

    standby   process stopped, ready to start
    starting  process started, not yet answering Celery's control API
    serving   consuming the queue
    draining  told to stop consuming (cancel_consumer); finishing what it holds
    stopping  process stopping (warm shutdown)

Scale-up takes a draining worker back first (it is warm and already holds nothing new), then
starts standby workers. Scale-down only drains workers whose task count is known, the idle
ones first: never a random one (the Kubernetes HPA picks pods at random, which is how busy
Airflow workers get killed: apache/airflow #26587, #32180, #41163). A draining worker is
stopped by the actuator once it holds no task, never by the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class WorkerState(str, Enum):
    STANDBY = "standby"
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPING = "stopping"


@dataclass(frozen=True)
class WorkerView:
    name: str  # component name, worker-default-2
    queue: str
    index: int
    state: WorkerState
    active: int | None = None  # tasks executing (None: the worker did not answer)
    reserved: int | None = None  # tasks prefetched, not yet started

    @property
    def busy(self) -> int | None:
        if self.active is None:
            return None
        return self.active + (self.reserved or 0)

    @property
    def counts_as_capacity(self) -> bool:
        return self.state in (WorkerState.STARTING, WorkerState.SERVING)


class Verb(str, Enum):
    START = "start"
    UNDRAIN = "undrain"
    DRAIN = "drain"


@dataclass(frozen=True)
class Action:
    verb: Verb
    worker: str


def capacity(workers: list[WorkerView]) -> int:
    """Workers that count as the queue's current size (the policy's `current`)."""
    return sum(1 for w in workers if w.counts_as_capacity)


def plan(desired: int, workers: list[WorkerView]) -> list[Action]:
    current = capacity(workers)
    if desired > current:
        need = desired - current
        # A draining worker comes back without a cold start; the least drained first.
        draining = sorted(
            (w for w in workers if w.state is WorkerState.DRAINING),
            key=lambda w: (-(w.busy or 0), w.index),
        )
        actions = [Action(Verb.UNDRAIN, w.name) for w in draining[:need]]
        need -= len(actions)
        standby = sorted((w for w in workers if w.state is WorkerState.STANDBY), key=lambda w: w.index)
        actions += [Action(Verb.START, w.name) for w in standby[:need]]
        return actions
    if desired < current:
        excess = current - desired
        # Only workers that told us what they hold may be drained: idle first, then the least
        # busy; among equals the highest index, so worker-1.. stay the long-lived ones.
        known = [w for w in workers if w.state is WorkerState.SERVING and w.busy is not None]
        victims = sorted(known, key=lambda w: (w.busy, -w.index))[:excess]
        return [Action(Verb.DRAIN, w.name) for w in victims]
    return []


class DrainVerdict(str, Enum):
    WAIT = "wait"
    STOP_IDLE = "drained"
    STOP_TIMEOUT = "drain-timeout"


def drain_verdict(busy: int | None, elapsed: float, timeout: float, settle: float) -> DrainVerdict:
    """Whether a draining worker may be stopped now.

    Idle means the worker answered and holds nothing (active + reserved == 0), at least
    `settle` seconds after it stopped consuming: a message fetched just before the
    cancel is rejected back to the queue by kombu, and the settle time lets that finish.
    A worker that never gets idle is stopped after `timeout` (workers.drain_timeout); its warm
    shutdown then still gives the running tasks that long again before supervisord kills it.
    """
    if elapsed >= timeout:
        return DrainVerdict.STOP_TIMEOUT
    if busy == 0 and elapsed >= settle:
        return DrainVerdict.STOP_IDLE
    return DrainVerdict.WAIT
