"""Memory of every component over time: the PSS of its whole process tree, sampled in a thread.

PSS (proportional set size) shares each page between the processes that map it, so summing the
processes of a tree does not count twice the pages a forked worker shares with its parent, as
RSS would. A worker forked by the fork server counts as the worker, not the fork server
(`forkserver.family`). Processes younger than `MIN_AGE_S` further down than the component's own
children are left out: a task process (under a worker's pool process) lives seconds, and
whether one happens to exist at a sample says nothing about what the component keeps; the
pool processes, which live as long as the worker, are counted from its start. Processes that end between
listing and reading are skipped.
"""

from __future__ import annotations

import threading
import time

import psutil

from airscale.runtime import forkserver
from airscale.runtime.cluster import Cluster
from airscale.runtime.supervisor import RUNNING
from airscale.soak.verdict import MemorySample

MIN_AGE_S = 60.0


def tree_pss_mib(pid: int, socket_path, forked, now: float) -> float:
    total = 0
    roots = {pid, *(w for w, c in forked.items() if c == pid)}
    for p in forkserver.family(pid, socket_path, forked):
        try:
            # The component and its own children (a worker's pool processes, however young)
            # count; a young grandchild (a task process under a pool process) does not.
            if p.pid not in roots and p.ppid() not in roots and now - p.create_time() < MIN_AGE_S:
                continue
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total / 2**20


def sample(cluster: Cluster, now: float) -> list[MemorySample]:
    infos = cluster.supervisor.infos()
    sock = cluster.layout.forkserver_socket
    forked = forkserver.forked_map(sock)
    out = []
    for name, info in sorted(infos.items()):
        pid = info.get("pid")
        if info.get("statename") != RUNNING or not pid:
            continue
        out.append(MemorySample(now, name, int(pid), tree_pss_mib(int(pid), sock, forked, now)))
    return out


class Sampler:
    """Samples every `interval` seconds until `stop()`."""

    def __init__(self, cluster: Cluster, interval: float = 30.0):
        self.cluster, self.interval = cluster, interval
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-memory", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> list[MemorySample]:
        self._stop.set()
        self._thread.join(timeout=60)
        return list(self.samples)

    def _run(self) -> None:
        while True:
            try:
                self.samples += sample(self.cluster, time.time())
            except Exception:  # noqa: BLE001, S110 - the supervisor busy: the next sample reads again
                pass
            if self._stop.wait(self.interval):
                return
