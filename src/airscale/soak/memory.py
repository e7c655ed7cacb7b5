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


def tree_pss_mib(pid: int, socket_path, forked, now: float) -> tuple[float, float]:
    """(PSS of the component's tree, the part of it in PostgreSQL's shared memory segment)."""
    total = segment = 0
    roots = {pid, *(w for w, c in forked.items() if c == pid)}
    for p in forkserver.family(pid, socket_path, forked):
        try:
            # The component and its own children (a worker's pool processes, however young)
            # count; a young grandchild (a task process under a worker's pool process) does not.
            if p.pid not in roots and p.ppid() not in roots and now - p.create_time() < MIN_AGE_S:
                continue
            if p.name() == "postgres":
                pss, seg = smaps_pss(p.pid)
                total, segment = total + pss, segment + seg
            else:
                total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total / 2**20, segment / 2**20


def smaps_pss(pid: int) -> tuple[int, int]:
    """(bytes of PSS, of which in shared memory segments) of one process, from one read of its
    smaps. With PostgreSQL the segment is the fixed-size region holding shared_buffers that
    the postmaster maps at start. It is reported apart because it fills up to its configured
    size as the database touches more pages, which is a cache, not growth."""
    try:
        with open(f"/proc/{pid}/smaps", encoding="ascii", errors="replace") as f:
            return smaps_totals(f)
    except FileNotFoundError:
        raise psutil.NoSuchProcess(pid) from None
    except PermissionError:
        raise psutil.AccessDenied(pid) from None


def smaps_totals(smaps_lines) -> tuple[int, int]:
    """(bytes of PSS of every mapping, of those in shared segments) of one /proc/PID/smaps
    (pure): the segments are mappings shared ('s' perms) of `/dev/zero (deleted)` (PostgreSQL's
    shared_memory_type mmap) or `/SYSV...` (sysv)."""
    total = segment = 0
    inside = False
    for line in smaps_lines:
        head = line.split(maxsplit=5)
        if not head:
            continue
        if "-" in head[0] and len(head) >= 5:  # a mapping: range perms offset dev inode [path]
            path = head[5].strip() if len(head) == 6 else ""
            inside = head[1].endswith("s") and (path == "/dev/zero (deleted)" or path.startswith("/SYSV"))
        elif head[0] == "Pss:":
            kib = int(head[1]) * 1024
            total += kib
            segment += kib if inside else 0
    return total, segment


def sample(cluster: Cluster, now: float) -> list[MemorySample]:
    infos = cluster.supervisor.infos()
    sock = cluster.layout.forkserver_socket
    forked = forkserver.forked_map(sock)
    out = []
    for name, info in sorted(infos.items()):
        pid = info.get("pid")
        if info.get("statename") != RUNNING or not pid:
            continue
        pss, segment = tree_pss_mib(int(pid), sock, forked, now)
        out.append(MemorySample(now, name, int(pid), pss, segment))
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
