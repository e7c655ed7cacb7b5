"""The processes of a cluster and the order they start in, derived from the spec (pure).

Every component has a stable name (`postgres`, `scheduler-2`, `worker-default-1`) by which it
can be found, stopped, restarted and read (`airscale logs NAME`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from airscale.runtime import api_servers
from airscale.runtime.capability import Capability
from airscale.runtime.component import AFTER_WORKERS_STAGE, BROKER, DATABASE, WORKER_STAGE, Component, postgres_user
from airscale.runtime.daemon import spec_daemon_component
from airscale.runtime.layout import Layout
from airscale.spec import Spec

API_SERVER = api_servers.API_SERVER  # the kind of every instance; the name of a single one
DAG_PROCESSOR = "dag-processor"
TRIGGERER = "triggerer"
POSTGRES = "postgres"
REDIS = "redis"
FORKSERVER = "worker-forkserver"
LIVENESS = "liveness"


def airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


def accelerated_airflow() -> tuple[str, ...]:
    """Airflow's CLI with airscale's accelerators (airscale.runtime.airflow_entry): the scheduler,
    the dag-processor, the api-server and the Celery workers run through it, other components
    through `airflow`."""
    return (sys.executable, "-m", "airscale.runtime.airflow_entry")


def celery_node_name(name: str) -> str:
    return f"{name}@%h"


def celery_worker_command(spec: Spec, queue: str, name: str, serve_logs: bool = False,
                          check_unique: bool = True) -> tuple[str, ...]:
    """The worker's command. `check_unique=False` leaves out `--celery-hostname`: Airflow then
    skips its check that no worker of that name runs (a broadcast that always waits Celery's
    full 1 s timeout, on every autoscaled start) and the node name goes to Celery through
    AIRSCALE_CELERY_HOSTNAME (airscale.runtime.airflow_entry). For workers airscale supervises,
    whose names are unique by construction."""
    cmd = [
        *accelerated_airflow(), "celery", "worker",
        "--queues", queue,
        "--concurrency", str(spec.queues[queue].concurrency),
        *(("--celery-hostname", celery_node_name(name)) if check_unique else ()),
        # Mingle asks the other workers for their revoked-task lists and waits a full second for
        # answers at every start (measured: 1.0 s of a 4.8 s start on an idle host), which an
        # autoscaled worker pays on each scale-up. Airflow 3 rejects a stale workload at the
        # API server whatever the worker knows, so the lists are not needed.
        "--without-mingle",
    ]
    if not serve_logs:
        # The log server binds every interface on a fixed port: several workers on one host
        # collide, and it would break the loopback-only promise. The api-server reads the
        # shared local log folder instead.
        cmd.append("--skip-serve-logs")
    return tuple(cmd)


def warm_started(command: tuple[str, ...], layout: Layout) -> tuple[str, ...]:
    """`python -m MODULE ARGS` run through the fork server's client: forked from the server
    when it can, started cold otherwise (airscale.runtime.forkserver)."""
    assert command[1] == "-m", command
    return (sys.executable, "-m", "airscale.runtime.forkserver", "run", "--socket",
            str(layout.forkserver_socket), "--", *command[1:])


def components(spec: Spec, layout: Layout, postgres_bin: Path | None,
               capabilities: Sequence[Capability]) -> list[Component]:
    """The cluster's components in start order (pure): the core, then what each capability
    adds (airscale.runtime.capability), sorted by stage (stable, so each keeps its order)."""
    out = core_components(spec, layout, postgres_bin, runs_database=any(c.runs_database(spec) for c in capabilities))
    for cap in capabilities:
        out += cap.components(spec, layout, tuple(out))
    return sorted(out, key=lambda c: c.stage)


def airflow_needs(spec: Spec) -> tuple[str, ...]:
    """What a scheduler or a worker cannot run without: the database, and the broker (Celery)."""
    return (DATABASE, BROKER) if spec.uses_celery else (DATABASE,)


def airflow_reads(layout: Layout) -> tuple[Path, ...]:
    """What every Airflow process reads at start: airflow.cfg, the cluster policy module, and
    the versions it runs (a new Airflow installed is a new input: runtime.versions)."""
    return (layout.airflow_cfg, layout.local_settings, layout.versions_file)


def api_server_components(spec: Spec, layout: Layout) -> list[Component]:
    """The api-server, or its instances behind HAProxy (airscale.runtime.api_servers)."""
    # The LDAP settings too (auth capability): FAB reads webserver_config.py at start.
    reads = (*airflow_reads(layout), layout.admin_passwords, layout.webserver_config)
    if not api_servers.redundant(spec):
        return [Component(API_SERVER, API_SERVER, (*accelerated_airflow(), "api-server"), stage=2, needs=(DATABASE,),
                          reads=reads)]
    out = [Component(name, API_SERVER, (*accelerated_airflow(), "api-server", "--host", api_servers.INSTANCE_HOST,
                                        "--port", str(spec.ports.api_instance(i))),
                     stage=2, needs=(DATABASE,), reads=reads)
           for i, name in enumerate(api_servers.instance_names(spec), start=1)]
    # Master-worker mode (-W): SIGUSR2 reloads the file without closing the listening socket.
    out.append(Component(api_servers.API_PROXY, api_servers.PROXY_KIND,
                         (api_servers.haproxy_bin(), "-W", "-db", "-f", str(api_servers.haproxy_cfg(layout))),
                         stage=2, reads=(api_servers.haproxy_cfg(layout),), reload_signal="USR2"))
    return out


def core_components(spec: Spec, layout: Layout, postgres_bin: Path | None, runs_database: bool = False) -> list[Component]:
    """The core of a cluster: database (unless a capability runs it), broker, Airflow, workers."""
    af = airflow_bin()
    out: list[Component] = []
    needs = airflow_needs(spec)
    reads = airflow_reads(layout)
    if spec.database.url is None and not runs_database:
        assert postgres_bin is not None
        out.append(
            Component(
                POSTGRES, POSTGRES, (str(postgres_bin / "postgres"), "-D", str(layout.pgdata)),
                stage=0, user=postgres_user(), stopsignal="INT", stopwaitsecs=60,
                # SIGHUP = pg_reload_conf(); settings that need a restart wait for one
                # (airscale.runtime.inputs.POSTMASTER_SETTINGS).
                reads=(layout.pgdata / "airscale.conf", layout.pgdata / "pg_hba.conf"), reload_signal="HUP",
            )
        )
    from airscale.runtime import pgbouncer

    if pgbouncer.enabled(spec):
        out.append(pgbouncer.component(spec, layout))
    if spec.uses_celery and spec.broker.url is None:
        from airscale.runtime.broker import restart_delay

        from airscale.runtime.broker import sentinel_on

        out.append(Component(REDIS, REDIS, ("redis-server", str(layout.redis_conf)), stage=1,
                             restart_delay=restart_delay(spec),
                             # Under Sentinel, Redis rewrites its own file (REPLICAOF, CONFIG
                             # REWRITE): its digest says nothing about what `up` changed.
                             reads=() if sentinel_on(spec) else (layout.redis_conf,)))
    out += api_server_components(spec, layout)
    for i in range(1, spec.schedulers.count + 1):
        out.append(Component(f"scheduler-{i}", "scheduler", (*accelerated_airflow(), "scheduler", "--skip-serve-logs"),
                             stage=3, needs=needs, reads=reads))
    out.append(Component(DAG_PROCESSOR, DAG_PROCESSOR, (*accelerated_airflow(), "dag-processor"), stage=4,
                         needs=(DATABASE,), reads=reads))
    out.append(Component(TRIGGERER, TRIGGERER, (af, "triggerer", "--skip-serve-logs"), stage=4, needs=(DATABASE,),
                             reads=reads))
    if spec.uses_celery:
        if spec.workers.warm_start:
            # Imports Airflow once; workers are forked from it (airscale.runtime.forkserver).
            out.append(Component(FORKSERVER, FORKSERVER, (
                sys.executable, "-m", "airscale.runtime.forkserver", "serve",
                "--socket", str(layout.forkserver_socket)), stage=4, reads=reads))
        for queue, q in spec.queues.items():
            for i, name in enumerate(spec.worker_names(queue), start=1):
                command = celery_worker_command(spec, queue, name, check_unique=False)
                if spec.workers.warm_start:
                    command = warm_started(command, layout)
                out.append(
                    Component(
                        name, "worker", command, stage=WORKER_STAGE,
                        env={"AIRSCALE_CELERY_HOSTNAME": celery_node_name(name)},
                        autostart=i <= q.min_workers, queue=queue,
                        # Warm shutdown: a worker stops taking tasks and finishes the running ones.
                        stopwaitsecs=spec.workers.drain_timeout, needs=needs, reads=reads,
                    )
                )
    if spec.ha.liveness_timeout > 0 and spec.spec_file is not None:
        # Kills what hangs, so the restart listener starts it again (airscale.runtime.liveness).
        out.append(spec_daemon_component(LIVENESS, "airscale.runtime.liveness", spec, stage=AFTER_WORKERS_STAGE))
    return out
