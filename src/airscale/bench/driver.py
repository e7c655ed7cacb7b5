"""Driving a bench cluster: bring it up and down, find its processes, account their CPU.

A `Target` is one running bench cluster (stock or tuned) as the bench sees it: the
cluster opened from its spec (`airscale.assembly.open_cluster`), a REST client once it is up, and the
statsd listener that receives its scheduler loop and parse timings. It knows nothing of
scenarios; `playback` runs those against it and reads the figures it offers here: CPU seconds
per component kind, statsd values over a time window, the metadata database, the
dag-processor settings it runs with.

CPU accounting counts a component's whole process tree, reaped children included (task
processes are forked and reaped by the worker's pool processes). A worker forked by the fork
server counts for the client supervisord started, not for the fork server; the fork server's
records of which worker belongs to which client are read once per sample (`Target.cpu`).
"""

from __future__ import annotations

import configparser
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from airscale.bench import statsd
from airscale.bench.specs import statsd_port
from airscale.errors import AirscaleError
from airscale.runtime import forkserver
from airscale.spec import Spec


def prepare_root(root: Path) -> None:
    """PostgreSQL runs as `postgres` when we are root: every folder on the way must be enterable."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)


def _tree_sum(pids: list[int], forked: Mapping[int, int] | None, measure: Callable[[psutil.Process], float]) -> float:
    """`measure` summed over processes and all their descendants, each process once; a worker
    forked by the fork server counts for its client (`forked`: the fork server's records,
    airscale.runtime.forkserver.forked_map; None: no fork server)."""
    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            procs = forkserver.family(pid, forked=forked)
        except psutil.Error:
            continue
        for p in procs:
            if p.pid in seen:
                continue
            seen.add(p.pid)
            try:
                total += measure(p)
            except psutil.Error:
                pass
    return total


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def tree_cpu(pids: list[int], forked: Mapping[int, int] | None = None) -> float:
    """CPU seconds of processes and all their descendants, including reaped children
    (task processes are forked and reaped by the worker's pool processes)."""
    return _tree_sum(pids, forked, _cpu_s)


def tree_pss_mib(pids: list[int], forked: Mapping[int, int] | None = None) -> float:
    """Summed PSS (MiB) of processes and their descendants: a page shared by n processes counts
    1/n to each, so the sum is what the tree costs the machine."""
    return _tree_sum(pids, forked, lambda p: p.memory_full_info().pss / (1024 * 1024))


class Target:
    """One running bench cluster."""

    def __init__(self, variant: str, spec: Spec):
        from airscale.assembly import open_cluster

        self.variant = variant
        self.spec = spec
        self.cluster = open_cluster(spec)
        self.client = None
        self.statsd: statsd.Listener | None = None

    def up(self, progress: Callable[[str], None]) -> None:
        from airscale.runtime.airflow_config import api_url
        from airscale.workload.client import AirflowClient

        try:
            self.statsd = statsd.Listener(statsd_port(self.spec))
        except OSError as e:
            raise AirscaleError(f"the bench cannot listen for the {self.variant} cluster's statsd on "
                                f"127.0.0.1:{statsd_port(self.spec)}: {e.strerror}",
                                "choose another --stock-port / --tuned-port (the port is base_port + 6)") from None
        self.cluster.up(lambda m: progress(f"{self.variant}: {m}"))
        # A generous timeout: the machine may be loaded by other clusters.
        self.client = AirflowClient(api_url(self.spec), "admin", self.cluster.secrets().admin_password,
                                    timeout=60)

    def down(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.statsd is not None:
            self.statsd.close()
        self.cluster.down(purge=True)

    def stop_airflow(self, progress: Callable[[str], None]) -> None:
        """Stop the cluster's Airflow processes that could do work (schedulers, dag-processor,
        triggerer, workers), all at once, and wait up to 2 minutes for them to be down."""
        names = [c.name for c in self.cluster.components()
                 if c.kind in ("scheduler", "dag-processor", "triggerer", "worker") and c.autostart]
        progress(f"{self.variant}: stopping {', '.join(names)}")
        for n in names:  # all at once: a worker's warm shutdown may take a while
            self.cluster.stop_component(n, wait=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            infos = self.cluster.supervisor.infos()
            if all(infos.get(n, {}).get("statename") in ("STOPPED", "EXITED", "FATAL") for n in names):
                break
            time.sleep(1.0)

    def loop_ms(self, since: float, until: float) -> list[float]:
        return self.statsd.values(statsd.LOOP_DURATION, since, until) if self.statsd else []

    def pids(self, kinds: set[str] | None = None) -> list[int]:
        infos = self.cluster.supervisor.infos()
        out = []
        for c in self.cluster.components():
            if kinds is None or c.kind in kinds:
                pid = infos.get(c.name, {}).get("pid")
                if pid:
                    out.append(pid)
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far per component kind (scheduler, worker, api-server, ...)."""
        infos = self.cluster.supervisor.infos()
        by_kind: dict[str, list[int]] = {}
        for c in self.cluster.components():
            pid = infos.get(c.name, {}).get("pid")
            if pid:
                by_kind.setdefault(c.kind, []).append(pid)
        forked = forkserver.forked_map(self.cluster.layout.forkserver_socket)
        return {k: tree_cpu(pids, forked) for k, pids in by_kind.items()}

    def worker_pss_mib(self) -> float:
        """The Celery workers' summed PSS, their pool and task processes included."""
        forked = forkserver.forked_map(self.cluster.layout.forkserver_socket)
        return tree_pss_mib(self.pids({"worker"}), forked)

    def idle_scheduler_share(self, seconds: float) -> float:
        """Share of one core the schedulers use while nothing runs."""
        a = tree_cpu(self.pids({"scheduler"}))
        t0 = time.monotonic()
        time.sleep(seconds)
        b = tree_cpu(self.pids({"scheduler"}))
        return (b - a) / (time.monotonic() - t0)

    def connect(self):
        """A connection to the cluster's metadata database, in autocommit: every query sees
        what the cluster has committed since the last one."""
        from airscale.runtime.health import db_connect

        conn = db_connect(self.spec, self.cluster.secrets())
        conn.autocommit = True
        return conn

    def dag_processor_setting(self, key: str) -> float:
        """The dag-processor setting this cluster runs with (airflow.cfg, else Airflow's default)."""
        from airscale.tuning.planner import AIRFLOW_STOCK

        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(self.cluster.layout.airflow_cfg)
        return float(cfg.get("dag_processor", key, fallback=AIRFLOW_STOCK[("dag_processor", key)]))
