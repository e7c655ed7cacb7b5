"""Checks before `airscale up` starts anything: each failure names what is missing and the fix."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from airscale.errors import AirscaleError
from airscale.runtime.capability import Capability
from airscale.runtime.components import airflow_bin
from airscale.spec import Spec
from airscale.spec.ports import BLOCK_SIZE


def check_dags_folder(spec: Spec) -> None:
    p = spec.dags_path
    if not p.exists():
        raise AirscaleError(
            f"dags_folder {p} does not exist", f"create it (mkdir -p {p}) or point dags_folder at your DAGs"
        )
    if not p.is_dir():
        raise AirscaleError(f"dags_folder {p} is not a folder", "point dags_folder at a folder of DAG files")
    if not os.access(p, os.R_OK | os.X_OK):
        raise AirscaleError(
            f"dags_folder {p} is not readable", f"give read access (chmod u+rx {p}) or choose another folder"
        )


def check_binaries(spec: Spec) -> None:
    if not Path(airflow_bin()).exists():
        raise AirscaleError(
            f"the airflow command is missing ({airflow_bin()})",
            "run scripts/bootstrap (or `make demo`) to install the pinned Python dependencies",
        )
    if spec.uses_celery and spec.broker.url is None and shutil.which("redis-server") is None:
        raise AirscaleError(
            "redis-server is not installed (needed for the embedded broker)",
            "apt-get install redis-server, or set broker.url to an external Redis",
        )
    from airscale.runtime import api_servers, pgbouncer

    if api_servers.redundant(spec) and api_servers.haproxy_bin() == "haproxy":
        raise AirscaleError(
            f"haproxy is not installed (api_server.count is {spec.api_server.count}: the api-servers "
            "run behind HAProxy)",
            "apt-get install haproxy (scripts/bootstrap does), or set api_server.count: 1",
        )
    if pgbouncer.enabled(spec) and pgbouncer.missing():
        raise AirscaleError(
            "pgbouncer is not installed (database.pgbouncer is on"
            + (", as it is by default with ha.database)" if spec.database.pgbouncer is None else ")"),
            "apt-get install pgbouncer (scripts/bootstrap does), or set database.pgbouncer: false",
        )


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def planned_ports(spec: Spec, capabilities: Sequence[Capability] = ()) -> dict[str, int]:
    """What listens where, by name: the runtime's own components and the capabilities'."""
    ports = spec.ports
    from airscale.runtime import api_servers

    out = api_servers.ports(spec)
    if spec.database.url is None:
        out["postgres"] = ports.postgres
    if spec.uses_celery and spec.broker.url is None:
        out["redis"] = ports.redis
    from airscale.runtime import pgbouncer

    if pgbouncer.enabled(spec):
        out["pgbouncer"] = ports.pgbouncer
    for cap in capabilities:
        out.update(cap.ports(spec))
    return out


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; its default otherwise)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def check_ports(spec: Spec, capabilities: Sequence[Capability] = (), skip: set[str] = frozenset()) -> None:
    """Ports of components that are not ours and running must be free, and so must the rest of
    the cluster's block: a port in use there is most likely another cluster whose block
    overlaps this one (its ports at other offsets), which would collide as soon as either
    starts a component the other's block holds."""
    host = spec.cluster.listen_host
    other = f"choose another cluster.base_port (e.g. {spec.cluster.base_port + BLOCK_SIZE})"
    low, high = ephemeral_range()
    if spec.ports.base + BLOCK_SIZE > low and spec.ports.base <= high:
        # There the kernel picks the local ports of outgoing connections: any program's
        # connection can hold one of the block's ports at any time.
        other += (f"; this block is inside the ephemeral port range {low}-{high}, where outgoing "
                  f"connections take ports at random: a base_port below {low} avoids that")
    planned = planned_ports(spec, capabilities)
    for component, port in planned.items():
        if component in skip:
            continue
        if port_in_use(host, port):
            raise AirscaleError(
                f"port {port} on {host} (for {component}) is already in use by another program",
                f"stop that program or {other}",
            )
    base = spec.ports.base
    for port in sorted(set(range(base, base + BLOCK_SIZE)) - set(planned.values())):
        if port_in_use(host, port):
            raise AirscaleError(
                f"port {port} on {host}, in this cluster's block {base}-{base + BLOCK_SIZE - 1} "
                "(cluster.base_port), is already in use: another cluster's block may overlap it",
                f"give each cluster its own block, 100 apart: {other}, or stop that program",
            )
