"""`airscale restore`: an archive back into an empty data folder.

Everything is built in a staging folder beside the target (same file system), and only a
restore that got through `pg_restore` is renamed into place. So a restore that fails
midway (a damaged archive, a full disk, a stopped process) leaves the target as it was, and
running the same command again is the retry. The staging folder is deleted on failure.

In the staging folder: the archive's members are extracted and checked against the manifest,
the secrets (0600) and the admin password file go where `up` reads them, the data folder
marker names the spec's cluster, a fresh PostgreSQL is initialised with the restored
superuser password and started on the spec's port, the `airflow` role and database are made,
and `pg_restore` loads the dump in one transaction. The caller (the CLI) then runs `up`,
which runs `airflow db migrate` (an archive of an older Airflow is brought forward there) and
starts the rest. The cluster id is not restored: a new one keeps the restored cluster's
processes apart from the original's when both run on one machine.

`target_problem` and `spec_problem` are the pure refusals.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from airscale.backup import archive
from airscale.backup.take import ADMIN_PASSWORDS, client_args, client_bin
from airscale.errors import AirscaleError
from airscale.runtime import datadir, postgres
from airscale.runtime.capability import Capability
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

Progress = Callable[[str], None]
START_TIMEOUT_S = 60.0
RESTORE_TIMEOUT_S = 6 * 3600


def _quiet(_: str) -> None:
    pass


def target_problem(path: Path, exists: bool, is_dir: bool, entries: Sequence[str]) -> str | None:
    """Why the data folder `path` cannot receive a restore (pure), or None. Only an empty or
    missing folder can: a restore never overwrites a cluster, not even its own."""
    if not exists:
        return None
    if not is_dir:
        return f"{path} exists and is not a folder"
    if entries:
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        return f"{path} is not empty ({shown}); a restore only fills an empty data folder"
    return None


def spec_problem(spec: Spec) -> str | None:
    """Why a restore cannot bring this spec's database up (pure), or None."""
    if spec.database.url is not None:
        return ("database.url points at an external database; restore it with pg_restore from "
                "the archive's database.dump, then run airscale up")
    if spec.ha.database.enabled:
        return ("ha.database.enabled: restoring into the primary + standby is not supported yet; "
                "restore with ha.database.enabled: false, then turn it on")
    return None


def known_revision_of_installed_airflow() -> Callable[[str], bool]:
    """Whether a revision is one of the installed Airflow's migrations."""
    return installed_migrations().__contains__


_REV = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*["\']([0-9A-Za-z_]+)["\']', re.MULTILINE)
_DOWN = re.compile(r'^down_revision\s*(?::[^=]+)?=\s*(.+)$', re.MULTILINE)


def parse_migration(text: str) -> tuple[str, tuple[str, ...]] | None:
    """(revision, down revisions) of one alembic migration file's text (pure). Revisions are
    not all hex: Airflow 3.2's 0090 is "1b2c3d4e5f6g"."""
    rev = _REV.search(text)
    if not rev:
        return None
    down = _DOWN.search(text)
    downs = tuple(re.findall(r'["\']([0-9A-Za-z_]+)["\']', down.group(1))) if down else ()
    return rev.group(1), downs


def installed_migrations() -> dict[str, tuple[str, ...]]:
    """The installed Airflow's migrations (revision -> down revisions), read from its files
    without importing Airflow (seconds on a busy machine)."""
    from importlib.util import find_spec

    found = find_spec("airflow")
    folder = Path(next(iter(found.submodule_search_locations or []), "")) / "migrations" / "versions" if found else None
    out: dict[str, tuple[str, ...]] = {}
    if folder and folder.is_dir():
        for f in folder.glob("*.py"):
            got = parse_migration(f.read_text(errors="replace"))
            if got:
                out[got[0]] = got[1]
    return out


@dataclass(frozen=True)
class RestoreResult:
    data_dir: Path
    manifest: dict
    seconds: float


def check_target(spec: Spec) -> Path:
    """Raise unless the spec's data folder may receive a restore; return it (resolved)."""
    from airscale.spec.datadir import FIX, data_dir_problem

    problem = spec_problem(spec)
    if problem:
        raise AirscaleError(f"restore: {problem}", "nothing was changed")
    target = spec.data_path.resolve()
    problem = data_dir_problem(target, spec.base_dir, Path.home().resolve())
    if problem is None:
        exists = target.exists()
        entries = [p.name for p in target.iterdir()] if exists and target.is_dir() else []
        problem = target_problem(target, exists, target.is_dir(), entries)
    if problem:
        raise AirscaleError(f"restore refuses cluster.data_dir: {problem}; nothing was changed",
                            f"restore into a new folder (--data-dir DIR, or cluster.data_dir in the spec); {FIX}")
    return target


def read_manifest(path: Path) -> dict:
    """Check the whole archive at `path` (every checksum) and return its manifest."""
    try:
        manifest, found = archive.read_archive(path)
    except FileNotFoundError:
        raise AirscaleError(f"{path}: no such archive", "give the path of an `airscale backup` archive") from None
    except archive.ArchiveError as e:
        raise AirscaleError(f"{path} is not a readable airscale backup ({e})",
                            "it is damaged or truncated, or not an archive; use another backup") from None
    problems = archive.manifest_problems(manifest, found)
    if problems:
        raise AirscaleError(f"{path} is not a whole airscale backup: " + "; ".join(problems[:5]),
                            "it is damaged, truncated or foreign; use another backup")
    assert isinstance(manifest, dict)
    return manifest


def check_compatible(path: Path, manifest: dict) -> None:
    from importlib.metadata import version

    problem = archive.compatibility_problem(manifest, version("apache-airflow"),
                                            known_revision_of_installed_airflow())
    if problem:
        raise AirscaleError(f"{path} cannot be restored here: {problem}",
                            "restore it with the Airflow version it was taken with (or newer)")


def restore(path: Path, spec: Spec, capabilities: Sequence[Capability] = (),
            progress: Progress = _quiet, manifest: dict | None = None) -> RestoreResult:
    """Restore the archive at `path` into the (empty) data folder of `spec`. Raises
    AirscaleError, with the target unchanged, when anything fails."""
    from airscale.runtime import prereq

    t0 = time.monotonic()
    target = check_target(spec)
    if manifest is None:
        progress(f"checking {path}")
        manifest = read_manifest(path)
    check_compatible(path, manifest)
    prereq.check_binaries(spec)
    prereq.check_ports(spec, capabilities)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.restoring-{os.getpid()}"
    retry = f"nothing was written to {target}; fix the cause and run the same `airscale restore` again"
    pg: subprocess.Popen | None = None
    try:
        pg = _build(path, spec, staging, manifest, progress)
        _stop(pg)
        pg = None
        if target.exists():
            target.rmdir()  # empty (checked above); rename(2) could replace it, but says so less clearly
        os.rename(staging, target)
    except AirscaleError as e:
        raise AirscaleError(f"restore failed: {e.problem}", f"{retry} ({e.fix})" if e.fix else retry) from None
    except Exception as e:
        raise AirscaleError(f"restore failed: {type(e).__name__}: {e}", retry) from None
    finally:
        if pg is not None:
            _stop(pg)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return RestoreResult(target, manifest, time.monotonic() - t0)


def _build(path: Path, spec: Spec, staging: Path, manifest: dict, progress: Progress) -> subprocess.Popen:
    layout = Layout(staging)
    extracted = staging / "restore-archive"
    staging.mkdir(mode=0o755)
    datadir.claim(layout, spec.cluster.name, spec.base_dir)  # marked before anything else lands there
    extracted.mkdir(mode=0o700)
    progress("extracting the archive")
    got, found = archive.read_archive(path, extract_to=extracted)
    problems = archive.manifest_problems(got, found)
    if problems or got != manifest:  # the file changed since it was checked
        raise AirscaleError(f"{path} changed while it was read: " + "; ".join(problems[:3]))
    layout.make_dirs()
    os.replace(extracted / archive.SECRETS, layout.secrets_file)
    os.chmod(layout.secrets_file, 0o600)
    from airscale.runtime.secrets import load

    secrets = load(layout.secrets_file)
    admin = extracted / archive.FILES / ADMIN_PASSWORDS
    if admin.exists():
        os.replace(admin, layout.admin_passwords)
        os.chmod(layout.admin_passwords, 0o600)
        (layout.state / "admin-password-shown").touch()  # it was shown when the original came up
    bin_dir = postgres.find_bin_dir(spec)
    progress("initialising PostgreSQL")
    postgres.check_reachable_by_postgres(layout)
    postgres.initialise(layout, bin_dir, secrets)
    postgres.write_config(spec, layout)
    pg = _start(bin_dir, layout)
    try:
        _wait_ready(spec, secrets, pg, layout)
        postgres.ensure_database(spec, secrets)
        progress(f"loading the database (pg_restore of {found[archive.DUMP].size / 1e6:.1f} MB)")
        _pg_restore(spec, secrets, extracted / archive.DUMP, layout)
    except BaseException:
        _stop(pg)
        raise
    (layout.state / "restored-from.json").write_text(json.dumps({
        "archive": str(path.resolve()), "created": manifest.get("created"),
        "cluster": manifest.get("cluster"), "airflow_version": manifest.get("airflow_version"),
        "alembic_revision": manifest.get("alembic_revision")}, indent=1) + "\n")
    shutil.rmtree(extracted)
    return pg


def _start(bin_dir: Path, layout: Layout) -> subprocess.Popen:
    log = layout.log_of("restore-postgres")
    with open(log, "ab") as out:
        return subprocess.Popen([str(bin_dir / "postgres"), "-D", str(layout.pgdata)],
                                user=postgres.postgres_user(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_ready(spec: Spec, secrets: Secrets, pg: subprocess.Popen, layout: Layout) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if pg.poll() is not None:
            tail = layout.log_of("restore-postgres").read_text(errors="replace").strip().splitlines()[-3:]
            raise AirscaleError(f"PostgreSQL exited at start ({pg.returncode}): {' | '.join(tail)}")
        try:
            postgres.superuser_connect(spec, secrets).close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AirscaleError(f"PostgreSQL did not accept connections within {START_TIMEOUT_S:.0f}s") from None
            time.sleep(0.5)


def _pg_restore(spec: Spec, secrets: Secrets, dump: Path, layout: Layout, dbname: str = "airflow") -> None:
    from airscale.runtime.airflow_config import direct_database_url

    work = layout.run
    url = direct_database_url(spec, secrets)
    if dbname != "airflow":
        url = url.rsplit("/", 1)[0] + "/" + dbname
    dsn, env = client_args(url, work)
    try:
        # As the `airflow` role, objects owned by it: --no-owner/--no-privileges drop the
        # original's grants, which name its roles. One transaction: all or nothing.
        proc = subprocess.run(
            [client_bin(spec, "pg_restore"), "--no-password", "--exit-on-error", "--single-transaction",
             "--no-owner", "--no-privileges", f"--dbname={dsn}", str(dump)],
            env=env, capture_output=True, text=True, timeout=RESTORE_TIMEOUT_S, check=False)
    finally:
        (work / "pgpass").unlink(missing_ok=True)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or f"exit {proc.returncode}").splitlines()[-1]
        raise AirscaleError(f"pg_restore failed: {detail}")


def _stop(pg: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT): PostgreSQL ends its sessions and writes a clean checkpoint."""
    if pg.poll() is None:
        pg.send_signal(signal.SIGINT)
        try:
            pg.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pg.kill()
            pg.wait()


# -- the rollback of `airscale upgrade`: the database of a running cluster, from an archive --------
ROLLBACK_DB = "airflow_rollback"


def aside_name(when: float) -> str:
    """The name the replaced database keeps (pure)."""
    return "airflow_before_rollback_" + time.strftime("%Y%m%d%H%M%S", time.gmtime(when))


def restore_database_in_place(spec: Spec, secrets: Secrets, path: Path, layout: Layout,
                              progress: Progress = _quiet) -> str:
    """Replace the metadata database of the running cluster (its Airflow components stopped)
    with the archive's dump; returns the name the replaced database is kept under.

    The dump is loaded into a new database in one transaction, and only then are the two
    swapped by name (`ALTER DATABASE ... RENAME`, once nothing is connected to the old one):
    a load that fails leaves the cluster's database as it was, and the replaced one is kept,
    for a look at what the failed step did, until someone drops it."""
    import tempfile

    from psycopg2 import sql

    work = Path(tempfile.mkdtemp(prefix=".rollback-", dir=layout.run))
    try:
        manifest, found = archive.read_archive(path, extract_to=work)
        problems = archive.manifest_problems(manifest, found)
        if problems:
            raise AirscaleError(f"{path} is not a whole backup: " + "; ".join(problems[:3]))
        conn = postgres.superuser_connect(spec, secrets, timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(ROLLBACK_DB)))
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER airflow").format(sql.Identifier(ROLLBACK_DB)))
            progress(f"loading the dump into a new database {ROLLBACK_DB} (pg_restore, one transaction)")
            try:
                _pg_restore(spec, secrets, work / archive.DUMP, layout, dbname=ROLLBACK_DB)
            except BaseException:
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(ROLLBACK_DB)))
                raise
            aside = aside_name(time.time())
            progress(f"swapping it in: airflow -> {aside}, {ROLLBACK_DB} -> airflow")
            _swap(conn, aside)
        finally:
            conn.close()
        return aside
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _swap(conn, aside: str, tries: int = 20) -> None:
    """Rename airflow aside and the restored database to airflow. A rename needs the database
    without sessions: what is left (PgBouncer's server connections, a straggler) is ended
    first, and the rename tried again if one came back in between."""
    import psycopg2
    from psycopg2 import sql

    for attempt in range(tries):
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = 'airflow' AND pid <> pg_backend_pid()")
        # Both renames in one transaction: there is never a moment without an `airflow`.
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("ALTER DATABASE airflow RENAME TO {}").format(sql.Identifier(aside)))
                cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO airflow").format(sql.Identifier(ROLLBACK_DB)))
            conn.commit()
            conn.autocommit = True
            return
        except psycopg2.errors.ObjectInUse:
            conn.rollback()
            if attempt == tries - 1:
                raise AirscaleError("the database stayed in use; it was not replaced") from None
            time.sleep(0.5)
