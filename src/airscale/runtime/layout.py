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
    def local_settings(self) -> Path:
        """airflow_local_settings.py: Airflow imports it from AIRFLOW_HOME/config at start."""
        return self.airflow_home / "config" / "airflow_local_settings.py"

    @property
    def webserver_config(self) -> Path:
        """webserver_config.py: the FAB auth manager's Flask settings ([fab] config_file's default),
        read by the api-server at start; written by a capability when it has settings there."""
        return self.airflow_home / "webserver_config.py"

    @property
    def inputs_file(self) -> Path:
        """What each component read when it started (airscale.runtime.inputs)."""
        return self.state / "inputs.json"

    @property
    def versions_file(self) -> Path:
        """The Airflow and airscale versions `up` started the processes with (runtime.versions)."""
        return self.state / "versions.conf"

    @property
    def migrated_file(self) -> Path:
        """The alembic revision and Airflow version of the last `airflow db migrate`."""
        return self.state / "migrated"

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
        # What only this account's processes read (logs, Airflow's home, secrets, state) is
        # closed to other accounts; PostgreSQL's, PgBouncer's and Patroni's folders are their own.
        for d in (self.airflow_home, self.logs, self.run, self.state):
            os.chmod(d, 0o700)


def check_shared_sockets(layout: Layout) -> None:
    """Before `up`: the socket folders and files it would use outside the data folder (a long
    data path) are this account's own and private (see `private_dir`)."""
    import stat

    from airscale.errors import AirscaleError

    if not layout.forkserver_socket.is_relative_to(layout.root):
        private_dir(layout.forkserver_socket.parent)
    sock = layout.supervisor_socket
    if not sock.is_relative_to(layout.root) and os.path.lexists(sock):
        st = os.lstat(sock)
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise AirscaleError(f"{sock} exists and is not this account's supervisor socket",
                                "remove it (someone else may have made it), or give the cluster a shorter "
                                "data path (cluster.data_dir)")


def private_dir(path: Path) -> Path:
    """`path` as a folder only this account can use: made 0700 if missing; an existing one must
    be a real folder (not a symlink), ours, and closed to others. The sockets of a cluster whose
    data path is too long for a socket name live under the shared temporary folder, where
    another local user could have made the folder first, to read or redirect what is written
    there (pid files, the fork server's socket)."""
    import stat

    from airscale.errors import AirscaleError

    try:
        path.mkdir(mode=0o700, parents=False)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(path)
    problem = ("is a symbolic link" if stat.S_ISLNK(st.st_mode) else
               "is not a folder" if not stat.S_ISDIR(st.st_mode) else
               f"belongs to uid {st.st_uid}, not to this account ({os.geteuid()})" if st.st_uid != os.geteuid() else
               f"is open to other accounts (mode {stat.S_IMODE(st.st_mode):o})" if st.st_mode & 0o077 else None)
    if problem:
        raise AirscaleError(f"{path} {problem}; airscale keeps sockets and pid files there",
                            "remove it (someone else may have made it), or give the cluster a shorter "
                            "data path (cluster.data_dir) so that its sockets live under it")
    return path

