"""The faults a drill can inject, each against one named component of a live cluster.

A kill is `kill -9` of the component's main process *and every process under it* (pool
children, task supervisors, task processes): what a crashed machine or an OOM kill of the
container does. The supervisor then restarts the component as it would after any crash; a
drill never calls `airscale` to repair anything.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from airscale.drills import observe
from airscale.errors import AirscaleError
from airscale.runtime import forkserver
from airscale.runtime.cluster import Cluster
from airscale.runtime.components import API_SERVER, DAG_PROCESSOR, REDIS
from airscale.runtime.supervisor import RUNNING, STOPPED_STATES


@dataclass
class Context:
    cluster: Cluster
    dag_id: str
    run_ids: list[str]
    broker_down_s: float = 5.0
    node_down_s: float = 40.0  # db-failover: how long the frozen primary node stays down
    dcs_down_s: float = 60.0  # etcd-hang, dcs-hang: how long the etcd member(s) stay frozen


@dataclass(frozen=True)
class Fault:
    component: str
    at: float  # epoch seconds
    detail: str
    old_pid: int | None = None
    # When set, decides "recovered" instead of the component's health (e.g. a failover is
    # over when the database endpoint reaches a primary on another node).
    recovered: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    inject: Callable[[Context], Fault]
    # When the fault may be injected: the workload must be in flight for a kill to hurt.
    ready: Callable[[Context], bool]
    # None when the scenario fits the cluster, else why not (and the fix).
    unsupported: Callable[[Cluster], str | None] = lambda c: None
    # Alerts the monitoring stack must raise for this fault (observe/rules.py): a person hears
    # of every fault, even one the cluster healed by itself.
    alerts: tuple[str, ...] = ("ComponentRestarted",)


def kill_tree(pid: int, forkserver_socket: Path | None = None) -> list[int]:
    """SIGKILL a process and all its descendants at once (listed first, so none escapes
    by being re-parented between the kills); a worker's client with its forked worker."""
    procs = forkserver.family(pid, forkserver_socket)
    killed = []
    for p in procs:
        try:
            p.kill()
            killed.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return killed


def _pid_of(cluster: Cluster, name: str) -> int:
    info = cluster.supervisor.info(name)
    if info.get("statename") != RUNNING or not info.get("pid"):
        raise AirscaleError(f"{name} is not running ({info.get('statename')})",
                            f"start it first: airscale start {name}")
    return int(info["pid"])


def _kill(ctx: Context, name: str, what: str) -> Fault:
    pid = _pid_of(ctx.cluster, name)
    at = time.time()
    killed = kill_tree(pid, ctx.cluster.layout.forkserver_socket)
    return Fault(name, at, f"kill -9 {what} {name} (pid {pid}) and {len(killed) - 1} process(es) under it", pid)


def _running(ctx: Context) -> dict[str, int]:
    return observe.running_by_host(ctx.cluster, ctx.dag_id, ctx.run_ids)


def _some_running(ctx: Context) -> bool:
    return sum(_running(ctx).values()) >= 2


def _schedulers(cluster: Cluster) -> list[str]:
    return [c.name for c in cluster.components() if c.kind == "scheduler"]


def _scheduler_kill(ctx: Context) -> Fault:
    names = _schedulers(ctx.cluster)
    return _kill(ctx, names[0], f"one of {len(names)} schedulers,")


def _busiest_worker(ctx: Context) -> str | None:
    infos = ctx.cluster.supervisor.infos()
    running = _running(ctx)
    workers = [c.name for c in ctx.cluster.components()
               if c.kind == "worker" and infos.get(c.name, {}).get("statename") == RUNNING]
    best = max(workers, key=lambda w: running.get(w, 0), default=None)
    return best if best and running.get(best, 0) >= 2 else None


def _worker_kill(ctx: Context) -> Fault:
    name = _busiest_worker(ctx)
    if name is None:
        raise AirscaleError("no worker is running two or more of the drill's tasks",
                            "give the drill more runs (--runs) or longer tasks (--seconds)")
    n = _running(ctx).get(name, 0)
    return _kill(ctx, name, f"the worker running {n} task(s),")


def _broker_restart(ctx: Context) -> Fault:
    sup = ctx.cluster.supervisor
    old = _pid_of(ctx.cluster, REDIS)
    at = time.time()
    sup.stop(REDIS)
    deadline = time.monotonic() + 60
    while sup.info(REDIS)["statename"] not in STOPPED_STATES and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = time.time() - at
    time.sleep(ctx.broker_down_s)
    sup.start(REDIS)
    return Fault(REDIS, at, f"stop redis through the supervisor (took {stopped:.1f}s), "
                 f"start it {ctx.broker_down_s:.0f}s later", old)


def _no_embedded_redis(cluster: Cluster) -> str | None:
    if not cluster.spec.uses_celery or cluster.spec.broker.url is not None:
        return "broker-restart needs the embedded Redis (profile 'scale', no broker.url)"
    return None


def _no_celery(cluster: Cluster) -> str | None:
    return None if cluster.spec.uses_celery else "worker-kill needs Celery workers (profile 'scale')"


def _no_ha_database(cluster: Cluster) -> str | None:
    if cluster.spec.ha.database.enabled and cluster.spec.database.url is None:
        return None
    return "needs the PostgreSQL primary + standby (ha.database.enabled: true)"


def _primary_node(ctx: Context) -> str:
    from airscale.ha import database

    name = database.primary(ctx.cluster.spec)
    if name is None:
        raise AirscaleError("Patroni reports no primary", "look at airscale status and airscale logs pg-1")
    return name


def _db_failover(ctx: Context) -> Fault:
    """A hung or partitioned primary host, then its crash: freeze (SIGSTOP) the primary's
    Patroni and PostgreSQL so neither answers nor lets go of anything, kill -9 them after
    `node_down_s`, and let the supervisor restart the node (it must come back as standby)."""
    from airscale.ha import database

    name = _primary_node(ctx)
    pid = _pid_of(ctx.cluster, name)
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    # The postmaster is not always Patroni's child (a restarted Patroni adopts the running
    # one): find it by its data folder's postmaster.pid.
    postmaster = database.postmaster_pid(ctx.cluster.layout, name)
    if postmaster and postmaster not in {p.pid for p in procs}:
        pm = psutil.Process(postmaster)
        procs += [pm, *pm.children(recursive=True)]
    at = time.time()
    for p in procs:
        try:
            p.suspend()
        except psutil.NoSuchProcess:
            pass

    def crash() -> None:
        for p in procs:
            try:
                p.kill()  # SIGKILL ends a stopped process too
            except psutil.NoSuchProcess:
                pass

    threading.Timer(ctx.node_down_s, crash).start()

    def failed_over() -> bool:
        node = database.writable_node(ctx.cluster.spec, ctx.cluster.secrets())
        return node is not None and node != name

    return Fault("postgres", at, f"freeze the primary node {name} (Patroni pid {pid} and {len(procs) - 1} "
                 f"PostgreSQL process(es)) for {ctx.node_down_s:.0f}s, then kill -9 them", None, failed_over)


def _patroni_kill(ctx: Context) -> Fault:
    """kill -9 of the primary's Patroni alone: its PostgreSQL keeps running and writable (the
    split-brain case when clients pick the primary themselves)."""
    name = _primary_node(ctx)
    pid = _pid_of(ctx.cluster, name)
    at = time.time()
    os.kill(pid, signal.SIGKILL)
    return Fault(name, at, f"kill -9 Patroni of the primary {name} (pid {pid}) alone; its PostgreSQL keeps running",
                 pid)


def _etcd_target(ctx: Context) -> str:
    """The etcd raft leader (its loss also costs an election), else member 1."""
    from airscale.ha import database

    return database.etcd_name(database.etcd_leader(ctx.cluster.spec) or 1)


def _suspend_for(pids: list[int], seconds: float) -> None:
    """SIGSTOP the processes now and SIGCONT them `seconds` later: a hung process (a stuck disk,
    a partition) accepts TCP connections, since the kernel does, but never answers."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)

    def resume() -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    threading.Timer(seconds, resume).start()


def _etcd_hang(ctx: Context) -> Fault:
    name = _etcd_target(ctx)
    pid = _pid_of(ctx.cluster, name)
    at = time.time()
    _suspend_for([pid], ctx.dcs_down_s)
    return Fault(name, at, f"freeze (SIGSTOP) the etcd raft leader {name} (pid {pid}) for "
                 f"{ctx.dcs_down_s:.0f}s, then SIGCONT")


def _etcd_kill(ctx: Context) -> Fault:
    return _kill(ctx, _etcd_target(ctx), "the etcd raft leader")


def _dcs_hang(ctx: Context) -> Fault:
    """Every etcd member frozen: only Patroni's failsafe mode keeps the primary writable."""
    from airscale.ha import database

    names = [database.etcd_name(i) for i in database.ETCD_MEMBERS]
    pids = [_pid_of(ctx.cluster, n) for n in names]
    at = time.time()
    _suspend_for(pids, ctx.dcs_down_s)

    def all_back() -> bool:
        return all(database.etcd_health(ctx.cluster.spec, i)[0] for i in database.ETCD_MEMBERS)

    return Fault(names[0], at, f"freeze (SIGSTOP) all {len(names)} etcd members for {ctx.dcs_down_s:.0f}s, "
                 "then SIGCONT", None, all_back)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("scheduler-kill", "kill -9 one of the schedulers (the others carry on)",
                 _scheduler_kill, _some_running),
        Scenario("worker-kill", "kill -9 the Celery worker running the most tasks, with its task processes",
                 _worker_kill, lambda ctx: _busiest_worker(ctx) is not None, _no_celery),
        Scenario("broker-restart", "stop Redis, start it again a few seconds later",
                 _broker_restart, _some_running, _no_embedded_redis, ("BrokerRestarted",)),
        Scenario("api-server-kill", "kill -9 the api-server (tasks report to it)",
                 lambda ctx: _kill(ctx, API_SERVER, "the"), _some_running),
        Scenario("dag-processor-kill", "kill -9 the DAG processor (it also runs failure callbacks)",
                 lambda ctx: _kill(ctx, DAG_PROCESSOR, "the"), _some_running),
        Scenario("db-failover", "freeze then kill the PostgreSQL primary node; the standby takes over",
                 _db_failover, _some_running, _no_ha_database, ("DatabaseRestarted", "ComponentRestarted")),
        Scenario("patroni-kill", "kill -9 the primary's Patroni alone (PostgreSQL keeps running)",
                 _patroni_kill, _some_running, _no_ha_database),
        Scenario("etcd-hang", "freeze one etcd member (the raft leader), resume it later; the other two "
                 "keep the quorum", _etcd_hang, _some_running, _no_ha_database, ()),
        Scenario("etcd-kill", "kill -9 one etcd member (the raft leader); the supervisor restarts it",
                 _etcd_kill, _some_running, _no_ha_database),
        Scenario("dcs-hang", "freeze all etcd members, resume them later; failsafe mode keeps the primary",
                 _dcs_hang, _some_running, _no_ha_database, ()),
    ]
}

# `airscale drill all` runs these in this order: least disruptive first.
ORDER = ["scheduler-kill", "api-server-kill", "dag-processor-kill", "broker-restart", "worker-kill",
         "etcd-kill", "etcd-hang", "dcs-hang", "patroni-kill", "db-failover"]
