"""Finding every process of a cluster, including task processes that left their group.

Airflow runs each task in a process group of its own, so stopping a worker's group can leave
task processes behind. Every process of a cluster inherits the AIRSCALE_CLUSTER_ID marker from
supervisord; scanning for it finds them all, and `down` ends the stragglers by PID.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

MARKER = "AIRSCALE_CLUSTER_ID"


def cluster_pids(cluster_id: str) -> list[int]:
    me = os.getpid()
    pids = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get(MARKER) == cluster_id:
                pids.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return pids


def end_processes(pids: list[int], grace: float = 10.0) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns those that had to be killed."""
    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            p.send_signal(signal.SIGTERM)
            procs.append(p)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in alive]


def kill_tree(pid: int, forkserver_socket: Path | None = None) -> list[int]:
    """SIGKILL a process and all its descendants at once (listed first, so none escapes
    by being re-parented between the kills); a worker's client with its forked worker."""
    from airscale.runtime import forkserver

    killed = []
    for p in forkserver.family(pid, forkserver_socket):
        try:
            p.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
            killed.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return killed


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid} ({psutil.Process(pid).name()})")
        except psutil.NoSuchProcess:
            out.append(f"{pid} (gone)")
    return ", ".join(out)
