"""The faults a drill can inject, each against one named component of a live cluster.

A kill is `kill -9` of the component's main process *and every process under it* (pool
children, task supervisors, task processes): what a crashed machine or an OOM kill of the
container does. The supervisor then restarts the component as it would after any crash; a
drill never calls `airscale` to repair anything.

A hang is SIGSTOP of the same processes, SIGCONT after `hang_s`: a stuck disk, a partition or
a process that stalls while it still exists. Nothing crashes, so only liveness
(airscale.runtime.liveness) can notice; a hang longer than `ha.liveness_timeout` ends in a
kill and a restart. A database outage stops the database for `outage_s`: everything that needs
it crashes or waits, and must come back by itself once it answers again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from airscale.drills import observe
from airscale.errors import AirscaleError
from airscale.runtime.procs import kill_tree
from airscale.runtime.cluster import Cluster
from airscale.runtime.components import API_SERVER, DAG_PROCESSOR, REDIS, TRIGGERER
from airscale.runtime.supervisor import RUNNING, STOPPED_STATES


@dataclass
class Context:
    cluster: Cluster
    dag_id: str
    run_ids: list[str]
    broker_down_s: float = 5.0
    node_down_s: float = 40.0  # db-failover: how long the frozen primary node stays down
    hang_s: float = 60.0  # *-hang: how long the component stays stopped (SIGSTOP)
    outage_s: float = 90.0  # database-outage: how long the database stays away
    full_s: float = 60.0  # disk-full: how long the data folder's disk stays full
    max_fill_bytes: int = 4 << 30  # disk-full refuses a disk with more free than this


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


def _suspend(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.suspend()
        except psutil.NoSuchProcess:
            pass


def _resume(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.resume()
        except psutil.NoSuchProcess:
            pass  # liveness killed it meanwhile: the restarted one runs


def _hang(ctx: Context, name: str, what: str) -> Fault:
    """SIGSTOP a component's process tree for `hang_s`, then SIGCONT. Recovered: the hang is
    over (or liveness replaced the process) and the component is healthy."""
    from airscale.runtime import forkserver

    pid = _pid_of(ctx.cluster, name)
    procs = forkserver.family(pid, ctx.cluster.layout.forkserver_socket)
    at = time.time()
    _suspend(procs)
    threading.Timer(ctx.hang_s, _resume, args=(procs,)).start()

    def recovered() -> bool:
        info = ctx.cluster.supervisor.info(name)
        replaced = info.get("pid") not in (None, 0, pid)
        if not (replaced or time.time() >= at + ctx.hang_s) or info.get("statename") != RUNNING:
            return False
        try:
            return ctx.cluster.health_of([ctx.cluster.component(name)], ctx.cluster.secrets())[name].ok
        except Exception:  # noqa: BLE001 - unreadable is "not yet"
            return False

    return Fault(name, at, f"SIGSTOP {what} {name} (pid {pid}) and {len(procs) - 1} process(es) under it "
                 f"for {ctx.hang_s:.0f}s, then SIGCONT", None, recovered)


def _running_of_kind(ctx: Context, kind: str) -> list[str]:
    infos = ctx.cluster.supervisor.infos()
    return [c.name for c in ctx.cluster.components()
            if c.kind == kind and infos.get(c.name, {}).get("statename") == RUNNING]


def _api_server_kill(ctx: Context) -> Fault:
    """kill -9 an api-server: the only one, or the first running of the instances behind HAProxy
    (the others keep answering)."""
    names = _running_of_kind(ctx, API_SERVER)
    if not names:
        raise AirscaleError("no running api-server to kill", "look at airscale status")
    count = ctx.cluster.spec.api_server.count
    what = "the" if count == 1 else f"one of {count} api-servers,"
    return _kill(ctx, names[0], what)


def _hang_first(kind: str, what: str = "the") -> Callable[[Context], Fault]:
    def inject(ctx: Context) -> Fault:
        infos = ctx.cluster.supervisor.infos()
        names = [c.name for c in ctx.cluster.components()
                 if c.kind == kind and infos.get(c.name, {}).get("statename") == RUNNING]
        if not names:
            raise AirscaleError(f"no running {kind} to hang", "look at airscale status")
        return _hang(ctx, names[0], what)
    return inject


def _worker_hang(ctx: Context) -> Fault:
    name = _busiest_worker(ctx)
    if name is None:
        raise AirscaleError("no worker is running two or more of the drill's tasks",
                            "give the drill more runs (--runs) or longer tasks (--seconds)")
    return _hang(ctx, name, f"the worker running {_running(ctx).get(name, 0)} task(s),")


def _database_components(cluster: Cluster) -> list[str]:
    """What serves the metadata database: PostgreSQL, or in ha.database the Patroni nodes."""
    kinds = ("patroni",) if cluster.spec.ha.database.enabled else ("postgres",)
    return [c.name for c in cluster.components() if c.kind in kinds]


def _all_healthy(cluster: Cluster) -> bool:
    """Every component `up` runs is RUNNING and healthy (STANDBY workers aside)."""
    try:
        rows = cluster.status()
    except Exception:  # noqa: BLE001 - the database may still be starting
        return False
    return all(r["state"] in (RUNNING, "STANDBY") and r["healthy"] is not False for r in rows)


def _database_outage(ctx: Context) -> Fault:
    """Stop the database through the supervisor for `outage_s`, then start it: every
    component that needs it must be healthy again with nobody acting."""
    sup = ctx.cluster.supervisor
    names = _database_components(ctx.cluster)
    at = time.time()
    for n in names:
        sup.stop(n)

    def back() -> None:
        for n in names:
            sup.start(n)

    threading.Timer(ctx.outage_s, back).start()
    return Fault("postgres", at, f"stop the database ({', '.join(names)}) for {ctx.outage_s:.0f}s, then start it",
                 None, lambda: time.time() >= at + ctx.outage_s and _all_healthy(ctx.cluster))


FILL_FILE = "disk-full-drill.fill"
# First the disk is filled to this share free, under DataDiskAlmostFull's threshold but with
# room for Prometheus, Alertmanager and the receiver to record the alert; then to the brim.
NEARLY_FULL_FREE = 0.03
DISK_RULE_FOR_S = 60.0  # DataDiskAlmostFull's `for` (observe/rules.py) unless overridden


def _fill(f, stop_at_free: int, root) -> int:
    """Write 1 MiB chunks until the file system has `stop_at_free` bytes left, or none."""
    written, chunk = 0, b"\0" * (1 << 20)
    while True:
        st = os.statvfs(root)
        if st.f_bavail * st.f_frsize <= stop_at_free:
            return written
        try:
            written += f.write(chunk)
        except OSError:  # ENOSPC: full (a last partial page may still fit)
            try:
                written += f.write(chunk[:4096])
            except OSError:
                return written


def _disk_full(ctx: Context) -> Fault:
    """Fill the data folder's file system for `full_s`, then delete what was written. First to
    NEARLY_FULL_FREE, until the disk alert reaches the receiver (it must come before the disk is
    full), then to the brim. Refused on a disk with more than `max_fill_bytes` free: the drill
    is for a size-limited data folder (a tmpfs or a small volume), not the host's disk."""
    root = ctx.cluster.layout.root
    st = os.statvfs(root)
    free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    if free > ctx.max_fill_bytes:
        raise AirscaleError(
            f"disk-full would write {free / 2**30:.1f} GiB to fill the disk under {root}",
            "run it on a size-limited data folder (cluster.data_dir on a small tmpfs or volume), "
            "or raise --max-fill",
        )
    fill = root / FILL_FILE
    at = time.time()
    spec = ctx.cluster.spec
    with open(fill, "wb", buffering=0) as f:
        written = _fill(f, int(size * NEARLY_FULL_FREE), root)
        if observe.receiver_active(spec):
            rule_for = spec.monitoring.alert_for_seconds or DISK_RULE_FOR_S
            observe.wait_for_alerts(ctx.cluster, at, ("DataDiskAlmostFull",),
                                    time.time() + rule_for + observe.alert_delay(spec))
        full_at = time.time()
        written += _fill(f, 0, root)
    threading.Timer(ctx.full_s, lambda: fill.unlink(missing_ok=True)).start()
    return Fault("disk", at, f"fill the data folder's file system to {NEARLY_FULL_FREE:.0%} free, then "
                 f"to the brim ({written / 2**20:.0f} MiB in all) for {ctx.full_s:.0f}s, then free it", None,
                 lambda: time.time() >= full_at + ctx.full_s and _all_healthy(ctx.cluster))


def _no_embedded_database(cluster: Cluster) -> str | None:
    return None if cluster.spec.database.url is None else "database-outage needs the embedded database"


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


def _redis_primary(ctx: Context) -> str:
    """The Redis node that is primary now: `redis`, or with ha.broker the one the Sentinels name."""
    from airscale.runtime import broker

    if not broker.sentinel_on(ctx.cluster.spec):
        return REDIS
    name = broker.primary_node(ctx.cluster.spec, ctx.cluster.secrets())
    if name is None:
        raise AirscaleError("no Sentinel names a Redis primary", "look at airscale status and airscale logs sentinel-1")
    return name


def _broker_restart(ctx: Context) -> Fault:
    sup = ctx.cluster.supervisor
    name = _redis_primary(ctx)
    old = _pid_of(ctx.cluster, name)
    at = time.time()
    sup.stop(name)
    deadline = time.monotonic() + 60
    while sup.info(name)["statename"] not in STOPPED_STATES and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = time.time() - at
    time.sleep(ctx.broker_down_s)
    sup.start(name)
    return Fault(name, at, f"stop {name} through the supervisor (took {stopped:.1f}s), "
                 f"start it {ctx.broker_down_s:.0f}s later", old)


def _redis_kill(ctx: Context) -> Fault:
    """kill -9 the Redis primary: the Sentinels promote the replica; the restart listener starts
    the killed node once they have, and it rejoins as a replica of the new primary."""
    fault = _kill(ctx, _redis_primary(ctx), "the Redis primary")
    return Fault(fault.component, fault.at, fault.detail, fault.old_pid,
                 lambda: _broker_pair_healthy(ctx.cluster))


def _broker_pair_healthy(cluster: Cluster) -> bool:
    """One primary and one replica replicating from it (a returned old primary is a primary too
    until the Sentinels turn it), and every Sentinel healthy."""
    from airscale.runtime import broker

    names = [c.name for c in cluster.components() if c.kind in ("redis", "sentinel")]
    try:
        secrets = cluster.secrets()
        healths = cluster.health_of([cluster.component(n) for n in names], secrets)
        roles = sorted(str(r) for r in broker.roles(cluster.spec, secrets).values())
    except Exception:  # noqa: BLE001 - unreadable is "not yet"
        return False
    return roles == ["master", "slave"] and all(h.ok for h in healths.values())


def _redis_hang(ctx: Context) -> Fault:
    """SIGSTOP Redis; with ha.broker the primary, which is recovered once the hang is over and
    the Sentinels have turned it into a replica of the node they promoted meanwhile."""
    from airscale.runtime import broker

    fault = _hang(ctx, _redis_primary(ctx), "the Redis primary" if broker.sentinel_on(ctx.cluster.spec) else "the")
    if not broker.sentinel_on(ctx.cluster.spec):
        return fault
    return Fault(fault.component, fault.at, fault.detail, None,
                 lambda: time.time() >= fault.at + ctx.hang_s and _broker_pair_healthy(ctx.cluster))


def _no_embedded_redis(cluster: Cluster) -> str | None:
    if not cluster.spec.uses_celery or cluster.spec.broker.url is not None:
        return "broker-restart needs the embedded Redis (profile 'scale', no broker.url)"
    return None


def _no_ha_broker(cluster: Cluster) -> str | None:
    from airscale.runtime import broker

    return None if broker.sentinel_on(cluster.spec) else \
        "needs the Redis primary + replica with Sentinel (ha.broker.enabled: true, embedded broker)"


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


def _hang_first_database(ctx: Context) -> Fault:
    """PostgreSQL, or in ha.database the primary node (Patroni and its PostgreSQL)."""
    if not ctx.cluster.spec.ha.database.enabled:
        return _hang(ctx, "postgres", "the")
    name = _primary_node(ctx)
    fault = _hang(ctx, name, "the primary node's Patroni,")
    from airscale.ha import database

    postmaster = database.postmaster_pid(ctx.cluster.layout, name)
    if postmaster:  # a restarted Patroni adopts the running postmaster: not always its child
        pm = psutil.Process(postmaster)
        procs = [pm, *pm.children(recursive=True)]
        _suspend(procs)
        threading.Timer(ctx.hang_s, _resume, args=(procs,)).start()
    return fault


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
    _suspend_for([pid], ctx.hang_s)
    return Fault(name, at, f"freeze (SIGSTOP) the etcd raft leader {name} (pid {pid}) for "
                 f"{ctx.hang_s:.0f}s, then SIGCONT")


def _etcd_kill(ctx: Context) -> Fault:
    return _kill(ctx, _etcd_target(ctx), "the etcd raft leader")


def _dcs_hang(ctx: Context) -> Fault:
    """Every etcd member frozen: only Patroni's failsafe mode keeps the primary writable."""
    from airscale.ha import database

    names = [database.etcd_name(i) for i in database.ETCD_MEMBERS]
    pids = [_pid_of(ctx.cluster, n) for n in names]
    at = time.time()
    _suspend_for(pids, ctx.hang_s)

    def all_back() -> bool:
        return all(database.etcd_health(ctx.cluster.spec, i)[0] for i in database.ETCD_MEMBERS)

    return Fault(names[0], at, f"freeze (SIGSTOP) all {len(names)} etcd members for {ctx.hang_s:.0f}s, "
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
        Scenario("redis-kill", "kill -9 the Redis primary; the Sentinels promote the replica",
                 _redis_kill, _some_running, _no_ha_broker, ("ComponentRestarted",)),
        Scenario("api-server-kill", "kill -9 the api-server, or one of them behind HAProxy (tasks report to it)",
                 _api_server_kill, _some_running),
        Scenario("dag-processor-kill", "kill -9 the DAG processor (it also runs failure callbacks)",
                 lambda ctx: _kill(ctx, DAG_PROCESSOR, "the"), _some_running),
        Scenario("db-failover", "freeze then kill the PostgreSQL primary node; the standby takes over",
                 _db_failover, _some_running, _no_ha_database, ("DatabaseRestarted", "ComponentRestarted")),
        Scenario("patroni-kill", "kill -9 the primary's Patroni alone (PostgreSQL keeps running)",
                 _patroni_kill, _some_running, _no_ha_database),
        Scenario("database-outage", "stop the metadata database for a while (90 s), then start it",
                 _database_outage, _some_running, _no_embedded_database, ("ComponentRestarted",)),
        Scenario("disk-full", "fill the data folder's disk (a size-limited one) for a while (60 s), then free it",
                 _disk_full, _some_running, alerts=("DataDiskAlmostFull",)),
        Scenario("scheduler-hang", "SIGSTOP one scheduler (a stall its process survives), SIGCONT later",
                 _hang_first("scheduler", "one scheduler,"), _some_running, alerts=()),
        Scenario("api-server-hang", "SIGSTOP the api-server, SIGCONT later",
                 _hang_first(API_SERVER), _some_running, alerts=()),
        Scenario("worker-hang", "SIGSTOP the worker running the most tasks, with its tasks, SIGCONT later",
                 _worker_hang, lambda ctx: _busiest_worker(ctx) is not None, _no_celery, alerts=()),
        Scenario("dag-processor-hang", "SIGSTOP the DAG processor, SIGCONT later",
                 _hang_first(DAG_PROCESSOR), _some_running, alerts=()),
        Scenario("triggerer-hang", "SIGSTOP the triggerer, SIGCONT later",
                 _hang_first(TRIGGERER), _some_running, alerts=()),
        Scenario("redis-hang", "SIGSTOP Redis (the primary with ha.broker), SIGCONT later",
                 _redis_hang, _some_running, _no_embedded_redis, alerts=()),
        Scenario("postgres-hang", "SIGSTOP PostgreSQL (the primary node with ha.database), SIGCONT later",
                 _hang_first_database, _some_running, _no_embedded_database, alerts=()),
        Scenario("etcd-hang", "freeze one etcd member (the raft leader), resume it later; the other two "
                 "keep the quorum", _etcd_hang, _some_running, _no_ha_database, ()),
        Scenario("etcd-kill", "kill -9 one etcd member (the raft leader); the supervisor restarts it",
                 _etcd_kill, _some_running, _no_ha_database),
        Scenario("dcs-hang", "freeze all etcd members, resume them later; failsafe mode keeps the primary",
                 _dcs_hang, _some_running, _no_ha_database, ()),
    ]
}

# `--hang SECONDS` turns a kill drill into the hang of the same component.
HANG_OF = {"scheduler-kill": "scheduler-hang", "api-server-kill": "api-server-hang",
           "worker-kill": "worker-hang", "dag-processor-kill": "dag-processor-hang",
           "broker-restart": "redis-hang", "redis-kill": "redis-hang", "db-failover": "postgres-hang", "etcd-kill": "etcd-hang"}

# `airscale drill all` runs these in this order: least disruptive first.
ORDER = ["scheduler-kill", "api-server-kill", "dag-processor-kill", "broker-restart", "redis-kill", "worker-kill",
         "etcd-kill", "etcd-hang", "dcs-hang", "patroni-kill", "db-failover"]


# -- for callers that inject faults on their own schedule (airscale.soak) --------------------
def kill_component(cluster: Cluster, name: str, what: str) -> Fault:
    """kill -9 component `name` and every process under it, as a drill does."""
    return _kill(Context(cluster, "", []), name, what)


def redis_kill(cluster: Cluster) -> Fault:
    """kill -9 Redis (with ha.broker the primary, recovered once the pair replicates again)."""
    ctx = Context(cluster, "", [])
    from airscale.runtime import broker

    if broker.sentinel_on(cluster.spec):
        return _redis_kill(ctx)
    return _kill(ctx, REDIS, "the")


def database_failover(cluster: Cluster, node_down_s: float = 40.0) -> Fault:
    """The db-failover drill's fault: the PostgreSQL primary node frozen, then killed."""
    return _db_failover(Context(cluster, "", [], node_down_s=node_down_s))
