"""The memory of this cluster's workers, sampled while the autoscaler runs.

Every `SAMPLE_EVERY_S` the summed PSS of each serving worker's process tree (the worker the
fork server forked, its log server, its pool processes and their task processes, and its
fork-server client) is appended to `state/autoscaler-memory.jsonl` with the worker's concurrency
and the tasks it was running. `tuning.autoscaling.fit_memory` refits the idle-slot and
running-task figures from the last samples, so the memory headroom and `airscale plan` follow
what tasks on this cluster really take instead of the reference machine's figures.

PSS, not RSS: a page shared by n processes counts 1/n to each, so the trees of forked
processes add up to what the machine really holds. Reading it (smaps_rollup) costs about a
millisecond a process, once a minute.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import psutil

from airscale.autoscale import records
from airscale.autoscale.plan import WorkerState
from airscale.autoscale.signals import Snapshot
from airscale.runtime.forkserver import family, forked_map
from airscale.runtime.layout import Layout
from airscale.runtime.supervisor import Supervisor
from airscale.spec import Spec
from airscale.tuning.autoscaling import MEMORY_FILE, MEMORY_SAMPLES

log = logging.getLogger(__name__)

MIB = 1024 * 1024
SAMPLE_EVERY_S = 60.0
KEEP_LINES = 4 * MEMORY_SAMPLES  # the file is cut back to this many lines when twice as long


def memory_file(layout: Layout) -> Path:
    return layout.state / MEMORY_FILE


def _pss_mib(p: psutil.Process) -> float:
    try:
        return p.memory_full_info().pss / MIB
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0.0


class MemorySampler:
    def __init__(self, spec: Spec, supervisor: Supervisor, layout: Layout, clock: Callable[[], float] = time.time):
        self.spec, self.supervisor, self.layout, self.clock = spec, supervisor, layout, clock
        self.path = memory_file(layout)
        # A restarted autoscaler keeps what it measured before.
        recorded = records.read_jsonl(self.path)  # read once at start
        self.samples: deque[dict] = deque(recorded[-MEMORY_SAMPLES:], maxlen=MEMORY_SAMPLES)
        self.last_at = 0.0
        self.lines = len(recorded)

    def __call__(self, snap: Snapshot) -> list[dict]:
        """Sample the serving workers of `snap` if `SAMPLE_EVERY_S` has passed; the new samples."""
        now = self.clock()
        if now - self.last_at < SAMPLE_EVERY_S:
            return []
        self.last_at = now
        forked = forked_map(self.layout.forkserver_socket)
        new = []
        for q, qs in snap.queues.items():
            for w in qs.workers:
                # A worker starting or draining is not a steady figure; one that did not answer
                # has no known count of running tasks.
                if w.state is not WorkerState.SERVING or w.active is None:
                    continue
                pid = self.supervisor.info(w.name).get("pid") or 0
                procs = family(pid, forked=forked) if pid else []
                if not procs:
                    continue
                new.append({"at": round(now, 1), "worker": w.name, "queue": q,
                            "concurrency": self.spec.queues[q].concurrency, "active": w.active,
                            "processes": len(procs), "tree_mib": round(sum(_pss_mib(p) for p in procs), 1)})
        for rec in new:
            records.append_jsonl(self.path, rec)
            self.samples.append(rec)
        self.lines += len(new)
        if self.lines > 2 * KEEP_LINES:  # bounded: months of samples must not fill the disk
            keep = records.read_jsonl(self.path)[-KEEP_LINES:]
            records.write_jsonl_atomic(self.path, keep)
            self.lines = len(keep)
        return new
