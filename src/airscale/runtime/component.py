"""What a supervised process of a cluster is: its name, command, stage and the account it runs
as. The list of a cluster's components is built in `airscale.runtime.components`; capabilities
add theirs through `airscale.runtime.capability`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DATABASE = "database"
BROKER = "broker"
WORKER_STAGE = 5
# After the workers: daemons that act on them or need everything else up (autoscaler,
# reclaimer, db-cleaner); they stop first on `down`.
AFTER_WORKERS_STAGE = 6


@dataclass(frozen=True)
class Component:
    name: str
    # postgres | redis | api-server | scheduler | dag-processor | triggerer | worker-forkserver | worker ...
    kind: str
    command: tuple[str, ...]
    stage: int  # started in ascending stage order, each stage once the one before is healthy
    autostart: bool = True  # started by `up` (workers above min_workers are not)
    queue: str | None = None
    user: str | None = None
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    env: dict[str, str] = field(default_factory=dict)
    # What it cannot run without (DATABASE, BROKER): while one does not answer, a component
    # that ended waits for it instead of being restarted into the same failure
    # (airscale.runtime.restart_listener).
    needs: tuple[str, ...] = ()
    # Least seconds before the restart listener starts it again after it ended: a Redis node
    # under Sentinel stays down until the Sentinels have failed over, so that it comes back as
    # a replica of the new primary instead of as a primary that lost its last second of writes.
    restart_delay: float = 0.0
    # The configuration files it reads at start: with its program (command, environment) they
    # are its inputs, and `up` restarts it when one changed (airscale.runtime.inputs).
    reads: tuple[Path, ...] = ()
    # The signal that makes it read its files again without a restart (SIGHUP for PostgreSQL,
    # PgBouncer, Prometheus, Alertmanager, Patroni); None: only a restart does.
    reload_signal: str | None = None

    @property
    def is_airflow(self) -> bool:
        return self.kind not in ("postgres", "redis", "pgbouncer", "sentinel", "api-proxy")


def postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    return "postgres" if os.geteuid() == 0 else None


def postgres_owner() -> tuple[int, int] | None:
    """(uid, gid) that files read by PostgreSQL-side programs must belong to; None: ours."""
    user = postgres_user()
    if user is None:
        return None
    import pwd

    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid
