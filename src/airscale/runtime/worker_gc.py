"""Keep a task process from copying its pool process's memory (Celery worker accelerator).

Airflow 3 runs each task in a process forked from a Celery pool process. Fork shares every
page until one side writes to it, and Python's cyclic garbage collector writes to every object
it traverses (its GC header): the task process's first full collection copies every page of
the pool process's heap that holds a container object, the imported modules and, with the
worker DAG cache, the parsed DAG. The Celery provider freezes the worker's objects before the
pool processes fork (`gc.freeze()`, the same trick Airflow's dag-processor uses); nothing does
it for the objects a pool process creates afterwards, before it forks each task process.

Here the pool process freezes its objects right before each task (Celery's `task_prerun`, after
the DAG cache has parsed the file): the task process then collects only what it allocates
itself. A collection first frees the garbage of the previous task, so frozen objects are the
live ones. Live objects that die later (a DAG cache entry replaced after an edit) stay frozen;
every `REFREEZE_EVERY` tasks the pool process unfreezes, collects everything and freezes again,
which bounds that to what a few hundred tasks leave behind.

Turned on by `[airscale] worker_gc_freeze` (airscale.runtime.airflow_entry), off in the plan:
with and without it a worker of 8 busy slots measured 11.1 and 11.0 tasks per GiB
(BENCHMARKS.md), so the copies it prevents are not where a slot's memory goes.
"""

from __future__ import annotations

import gc
from typing import Any

REFREEZE_EVERY = 200  # tasks between full collections of the pool process


class Freezer:
    def __init__(self, refreeze_every: int = REFREEZE_EVERY):
        self.refreeze_every = refreeze_every
        self.tasks = 0

    def before_task(self) -> None:
        self.tasks += 1
        if self.tasks % self.refreeze_every == 0:
            gc.unfreeze()
        gc.collect()
        gc.freeze()


def install(refreeze_every: int = REFREEZE_EVERY) -> Freezer:
    """Hook the freeze into this Celery worker's pool processes (called from `worker_init`,
    after the DAG cache's hook, so a parse made for the task is frozen with the rest)."""
    from celery.signals import task_prerun

    freezer = Freezer(refreeze_every)

    @task_prerun.connect(weak=False)
    def _freeze(sender=None, **_: Any) -> None:
        if getattr(sender, "name", None) == "execute_workload":
            freezer.before_task()

    return freezer
