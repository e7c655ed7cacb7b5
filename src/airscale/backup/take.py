"""`airscale backup`: one archive (airscale.backup.archive) of a running cluster.

The database part is `pg_dump -Fc`: it reads one snapshot, so the dump is consistent while
tasks run, and Airflow keeps working meanwhile. It connects to the database itself (not
through PgBouncer, whose transaction pooling would break the snapshot) with the PostgreSQL
client of the cluster's own binaries, so the dump's format matches the server.

In the `ha` profile the dump comes from the standby when it streams and is fresh
(`dump_source`: its replay at most `MAX_STANDBY_LAG_BYTES` behind the primary's WAL), so the
primary serving Airflow does not carry the dump's reads; else, or when the dump on the standby
fails (a recovery conflict cancels it), from the primary, and the output says why.

The password reaches pg_dump through a PGPASSFILE (mode 0600, deleted afterwards), never its
command line or environment, where `ps` and /proc would show it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from airscale.backup import archive
from airscale.errors import AirscaleError
from airscale.runtime import health
from airscale.runtime.airflow_config import direct_database_url, node_database_url
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

Progress = Callable[[str], None]

# The generated configuration kept in the archive, by path in the data folder: for reading and
# comparing (a restore regenerates it from the spec), plus the admin password file, which a
# restore does put back so the same logins work.
CONFIG_FILES = (
    "airflow/airflow.cfg", "airflow/simple_auth_manager_passwords.json", "redis/redis.conf",
    "postgres/airscale.conf", "postgres/pg_hba.conf", "run/supervisord.conf", "state/keeper.json",
    "monitoring/prometheus.yml", "monitoring/alertmanager.yml", "monitoring/exporter.json",
)
ADMIN_PASSWORDS = "airflow/simple_auth_manager_passwords.json"
DUMP_TIMEOUT_S = 6 * 3600
# A standby whose replay is further behind the primary than one WAL segment (16 MB) is not
# "fresh": the dump would miss the last moments of work that the primary already has.
MAX_STANDBY_LAG_BYTES = 16 * 1024 * 1024
PRIMARY = "primary"


@dataclass(frozen=True)
class Node:
    """One PostgreSQL node of ha.database as it answered."""

    port: int
    standby: bool
    streaming: bool  # a standby whose WAL receiver streams from the primary
    lsn: int | None  # the primary's current WAL position, a standby's last replayed one


def lsn_bytes(lsn: str | None) -> int | None:
    """A PostgreSQL LSN ("16/B374D848") as a byte position (pure)."""
    if not lsn or "/" not in lsn:
        return None
    hi, lo = lsn.split("/", 1)
    return (int(hi, 16) << 32) + int(lo, 16)


def dump_source(nodes: list[Node], max_lag: int = MAX_STANDBY_LAG_BYTES) -> tuple[int | None, str]:
    """(the port of the standby to dump from, or None: the primary; why) (pure)."""
    primary = next((n for n in nodes if not n.standby), None)
    standbys = [n for n in nodes if n.standby]
    if not standbys:
        return None, "no standby answered: dumping from the primary"
    if primary is None or primary.lsn is None:
        return None, "the primary's WAL position is unknown, so the standby's freshness is: dumping from the primary"
    why = []
    for n in sorted(standbys, key=lambda n: n.port):
        if not n.streaming:
            why.append(f"the standby on port {n.port} is not streaming")
            continue
        if n.lsn is None:
            why.append(f"the standby on port {n.port} has replayed nothing")
            continue
        lag = max(0, primary.lsn - n.lsn)
        if lag > max_lag:
            why.append(f"the standby on port {n.port} is {lag} bytes behind (more than {max_lag})")
            continue
        return n.port, f"dumping from the standby on port {n.port} (streaming, {lag} bytes behind the primary)"
    return None, "; ".join(why) + ": dumping from the primary"


def probe_nodes(spec: Spec, secrets: Secrets) -> list[Node]:
    """The ha.database nodes that answer, with their role and WAL position."""
    import psycopg2

    from airscale.spec.ports import HA_DATABASE_NODES

    out = []
    for i in HA_DATABASE_NODES:
        port = spec.ports.pg_node(i)
        try:
            conn = psycopg2.connect(host=spec.client_host, port=port, user="postgres", dbname="postgres",
                                    password=secrets.postgres_superuser_password, connect_timeout=3)
        except Exception:  # noqa: BLE001, S112 - a node that does not answer is no source
            continue
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN "
                            "pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END, "
                            "(SELECT status FROM pg_stat_wal_receiver LIMIT 1)")
                standby, lsn, receiver = cur.fetchone()
            out.append(Node(port, bool(standby), receiver == "streaming", lsn_bytes(lsn)))
        except Exception:  # noqa: BLE001, S112 - nor one that fails the query (shutting down)
            continue
        finally:
            conn.close()
    return out


def archive_name(cluster: str, when: datetime) -> str:
    return f"airscale-{cluster}-{when.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}.tar"


def archive_pattern(cluster: str) -> re.Pattern[str]:
    """The names `archive_name` gives this cluster's archives (and only them)."""
    return re.compile(rf"^airscale-{re.escape(cluster)}-\d{{8}}T\d{{6}}Z\.tar$")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    seconds: float
    manifest: dict
    source: str = PRIMARY  # "primary", or "standby on port N"


def _quiet(_: str) -> None:
    pass


def pgpass_line(host: str, port: str, db: str, user: str, password: str) -> str:
    """One ~/.pgpass line; `:` and `\\` in a field are escaped, as libpq reads them."""
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(":", "\\:")

    return ":".join(esc(v) for v in (host, port, db, user, password)) + "\n"


def client_args(url: str, workdir: Path) -> tuple[str, dict[str, str]]:
    """(libpq DSN without the password, environment with a PGPASSFILE holding it) for `url`."""
    from psycopg2.extensions import make_dsn, parse_dsn

    params = parse_dsn(health.libpq_dsn(url))
    password = params.pop("password", "")
    pgpass = workdir / "pgpass"
    fd = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pgpass_line(params.get("host", "*"), params.get("port", "5432"),
                            params.get("dbname", "*"), params.get("user", "*"), password))
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE")}
    env.update(PGPASSFILE=str(pgpass), PGCONNECT_TIMEOUT="10")
    return make_dsn(**params), env


def client_bin(spec: Spec, name: str) -> str:
    """pg_dump / pg_restore: the cluster's PostgreSQL binaries' own, else the one on PATH."""
    if spec.database.url is None:
        from airscale.runtime.postgres import find_bin_dir

        exe = find_bin_dir(spec) / name
        if exe.is_file():
            return str(exe)
    found = shutil.which(name)
    if not found:
        raise AirscaleError(f"{name} not found", "install the PostgreSQL client (apt-get install postgresql-client)")
    return found


def versions() -> tuple[str, str]:
    from importlib.metadata import version

    return version("airscale"), version("apache-airflow")


def _pg_dump(spec: Spec, url: str, dump: Path, work: Path) -> str | None:
    """Run pg_dump of `url` into `dump`; None when it succeeded, else its last error line."""
    dsn, env = client_args(url, work)
    proc = subprocess.run(
        [client_bin(spec, "pg_dump"), "--format=custom", "--no-password", f"--file={dump}", dsn],
        env=env, capture_output=True, text=True, timeout=DUMP_TIMEOUT_S, check=False,
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip() or f"exit {proc.returncode}").splitlines()[-1]


def alembic_revision(spec: Spec, secrets: Secrets) -> str | None:
    try:
        conn = health.db_connect(spec, secrets, timeout=5)
    except Exception as e:  # psycopg2.OperationalError: the database is down
        raise AirscaleError(f"cannot reach the metadata database: {str(e).strip().splitlines()[0]}",
                            "bring the cluster up (airscale up) and run the backup again") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def take_backup(spec: Spec, secrets_file: Path, out: Path | None = None, progress: Progress = _quiet,
                now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                airflow_version: str | None = None) -> BackupResult:
    """Write the archive of the cluster of `spec` to `out` (default: a new name in the spec's
    backup folder) and return where, how big, how long. `airflow_version`: the Airflow the
    cluster runs, for the manifest, when it is not the installed one (before an upgrade)."""
    from airscale.runtime.layout import Layout
    from airscale.runtime.secrets import load

    layout = Layout(spec.data_path)
    if not secrets_file.exists():
        raise AirscaleError(f"no cluster at {layout.root} (no secrets.json)", "bring it up first: airscale up")
    if spec.spec_file is None:
        raise AirscaleError("the backup needs the spec file the cluster runs from", "pass -s FILE")
    secrets = load(secrets_file)
    created = now()
    out = out or spec.backup_path / archive_name(spec.cluster.name, created)
    if out.exists() and out.is_dir():
        raise AirscaleError(f"--out {out} is a folder", "give a file name, e.g. --out backup.tar")
    t0 = time.monotonic()
    revision = alembic_revision(spec, secrets)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Beside the archive: the dump is renamed into no other file system, and a full disk shows
    # at the dump, before the archive is begun.
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        dump = work / archive.DUMP
        source = PRIMARY
        if spec.database.url is None and spec.ha.database.enabled:
            port, why = dump_source(probe_nodes(spec, secrets))
            progress(why)
            if port is not None:
                error = _pg_dump(spec, node_database_url(spec, secrets, port), dump, work)
                if error is None:
                    source = f"standby on port {port}"
                else:
                    progress(f"pg_dump on the standby failed ({error}): dumping from the primary")
                    dump.unlink(missing_ok=True)
        if source == PRIMARY:
            progress(f"dumping the metadata database (pg_dump, revision {revision})")
            error = _pg_dump(spec, direct_database_url(spec, secrets), dump, work)
            if error is not None:
                raise AirscaleError(f"pg_dump failed: {error}", "check that the cluster's database runs "
                                    "(airscale status) and that its disk has room, then run the backup again")
        progress(f"database dumped ({dump.stat().st_size / 1e6:.1f} MB in {time.monotonic() - t0:.0f}s); "
                 "writing the archive")
        sources = {archive.DUMP: dump, archive.SPEC: spec.spec_file, archive.SECRETS: secrets_file}
        sources.update(archive.config_members(layout.root, CONFIG_FILES))
        members = {name: archive.sha256_of(p) for name, p in sources.items()}
        airscale_v, airflow_v = versions()
        # The Airflow whose schema the dump has: the one the cluster runs (an upgrade installs
        # the new one first), which a restore must have installed.
        from airscale.runtime.versions import recorded

        running = recorded(layout.versions_file, layout.migrated_file)
        airflow_v = airflow_version or (running.airflow if running else airflow_v)
        manifest = archive.build_manifest(
            cluster=spec.cluster.name, created=created.isoformat(timespec="seconds"),
            airscale_version=airscale_v, airflow_version=airflow_v, alembic_revision=revision,
            members=members)
        manifest["source"] = source
        archive.write_archive(out, manifest, sources)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupResult(out, out.stat().st_size, time.monotonic() - t0, manifest, source)
