"""Where a cluster keeps its files, all under `cluster.data_dir`."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# AF_UNIX socket paths are limited to 108 bytes on Linux.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_conf(self) -> Path:
        return self.root / "redis" / "redis.conf"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def airflow_cfg(self) -> Path:
        return self.airflow_home / "airflow.cfg"

    @property
    def admin_passwords(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    @property
    def task_logs(self) -> Path:
        return self.root / "logs" / "tasks"

    @property
    def logs(self) -> Path:
        """Component logs, one file per component (`airscale logs NAME`)."""
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def supervisord_conf(self) -> Path:
        return self.run / "supervisord.conf"

    @property
    def supervisord_pid(self) -> Path:
        return self.run / "supervisord.pid"

    @property
    def supervisor_socket(self) -> Path:
        sock = self.run / "supervisor.sock"
        if len(str(sock)) <= _MAX_SOCKET_PATH:
            return sock
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"airscale-{digest}.sock"

    @property
    def forkserver_socket(self) -> Path:
        """The worker fork server's socket; its clients record forked PIDs next to it."""
        sock = self.run / "forkserver" / "forkserver.sock"
        if len(str(sock)) <= _MAX_SOCKET_PATH:
            return sock
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"airscale-{digest}-fork" / "forkserver.sock"

    @property
    def restarts_file(self) -> Path:
        return self.state / "restarts.json"

    @property
    def keeper_config(self) -> Path:
        """What the restart listener reads: backoff cap, dependencies (restart_listener)."""
        return self.state / "keeper.json"

    @property
    def backup_state(self) -> Path:
        """The scheduled backups' record (backup.schedule), which the exporter reads."""
        return self.state / "backup.json"

    @property
    def cluster_id_file(self) -> Path:
        return self.state / "cluster-id"

    def log_of(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def make_dirs(self) -> None:
        for d in (self.root, self.airflow_home, self.logs, self.task_logs, self.run, self.state, self.redis_dir):
            d.mkdir(parents=True, exist_ok=True)
        # The embedded PostgreSQL runs as its own user and must be able to reach its folder.
        os.chmod(self.root, 0o755)
