"""Bringing a local cluster up, down, and reporting on it.

`up` is idempotent: it (re)generates every configuration from the spec, starts supervisord if
needed, and starts in stage order whatever is not running, each stage only once the one
before is healthy. `down` stops in reverse order (workers first, with a warm shutdown that
lets running tasks finish), then ends any process still carrying the cluster's marker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby

from airscale.errors import AirscaleError
from airscale.runtime import api_servers, apply, datadir, health, inputs, postgres, prereq, procs, versions
from airscale.runtime.airflow_config import (
    api_url,
    direct_database_url,
    render_airflow_cfg,
)
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.components import FORKSERVER, airflow_bin, components
from airscale.runtime.inputs import START, Change, Fingerprint, PoolChange, plan_changes
from airscale.runtime.layout import Layout, check_shared_sockets
from airscale.runtime.redis import write_node_configs
from airscale.runtime.restart_listener import keeper_config
from airscale.runtime.secrets import Secrets, load, load_or_create, write_private
from airscale.runtime.supervisor import (
    RESTART_LISTENER,
    RUNNING,
    STOPPED_STATES,
    Supervisor,
    render_supervisord_conf,
)
from airscale.spec import Spec

Progress = Callable[[str], None]
STAGE_TIMEOUT = 240.0


def _quiet(_: str) -> None:
    pass


@dataclass
class UpResult:
    api_url: str
    admin_password: str | None  # only when just created: shown once
    started: list[str]
    applied: list[str] = field(default_factory=list)  # "restarted X because Y", "reloaded Z ..."
    planned: list[Change] = field(default_factory=list)  # --dry-run: what `up` would do
    pools: list[PoolChange] = field(default_factory=list)  # done, or planned with --dry-run
    was_running: bool = False


def _migrated_stamp(revision: str) -> str:
    from importlib.metadata import version

    return f"{revision} airflow {version('apache-airflow')}"


def _last_error(log, start: int = 0) -> str:
    """What went wrong, from `log` past byte `start`: the first exception line, the root of the
    chain Python prints (`psycopg2.errors.LockNotAvailable: canceling statement due to lock
    timeout`, where the last one is what Airflow's cleanup raised on the aborted transaction),
    else the last line that speaks of an error, for the message."""
    import re

    try:
        with open(log, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return "no log"
    lines = [ln.strip() for ln in text.splitlines()[-300:] if ln.strip()]
    # `package.module.Name: message`, or a bare `SomethingError: message` (not `WARNING: ...`).
    exception = re.compile(r"^(?:[a-z_]\w*\.)+[A-Z]\w*: |^[A-Z]\w*(?:Error|Exception)\w*: ")
    for ln in lines:
        if exception.match(ln):
            return ln[-300:]
    for ln in reversed(lines):
        if any(w in ln for w in ("Error", "error", "FATAL", "failed")) and not ln.startswith("(Background"):
            return ln[-300:]
    return lines[-1][-300:] if lines else "no output"


def group_workers(comps: list[Component], stage: int) -> list[Component]:
    return [c for c in comps if c.stage == stage and c.kind == "worker"]


def workers_to_run(workers: list[Component], infos: dict[str, dict]) -> list[Component]:
    """The workers `up` makes sure of: those running, plus the lowest-numbered stopped ones
    until each queue has its min_workers (pure). Workers the autoscaler started stay, and one
    it drained is not brought back just because it is worker 1."""
    active = {"RUNNING", "STARTING", "BACKOFF"}
    out: list[Component] = []
    for queue in dict.fromkeys(w.queue for w in workers):
        mine = [w for w in workers if w.queue == queue]
        running = [w for w in mine if infos.get(w.name, {}).get("statename") in active]
        minimum = sum(1 for w in mine if w.autostart)
        stopped = [w for w in mine if w not in running]
        out += running + stopped[: max(0, minimum - len(running))]
    return out


def not_ready(members: list[Component], states: dict[str, str | None],
              healths: dict[str, health.Health]) -> dict[str, str]:
    """Members not ready yet, with why (pure). A component with a health check is ready as soon
    as the check passes, even inside supervisord's startsecs (STARTING): waiting those 5 s
    stage after stage made `up` twice as slow. One without a check must be RUNNING, past
    startsecs."""
    out = {name: h.detail for name, h in healths.items() if not h.ok}
    for c in members:
        state = states.get(c.name)
        if c.name in out or state == RUNNING or (state == "STARTING" and c.name in healths):
            continue
        out[c.name] = f"process {state}"
    return out


def restart_plan(state: str, track: dict, now: float) -> str:
    """What the restart listener will do about a component that ended (pure), for `status`."""
    if state not in ("EXITED", "FATAL"):
        return ""
    last = track.get("last") or {}
    how = ("failed at start" if last.get("state") == "FATAL"
           else f"exited {last.get('exitstatus')} after {last.get('uptime', 0):.0f}s" if last else "ended")
    if track.get("waiting_for"):
        return f"{how}; waiting for the {track['waiting_for']}"
    due = track.get("due")
    return f"{how}; restart in {max(0.0, due - now):.0f}s" if due else f"{how}; restarting"


class Cluster:
    """A local cluster: the runtime's core plus the capabilities it is given.

    `capabilities` is required: the commands pass every capability (`airscale.assembly`);
    a capability's own daemon that only reads the database or the workers passes `()`.
    """

    def __init__(self, spec: Spec, capabilities: Sequence[Capability]):
        self.spec = spec
        self.capabilities = tuple(capabilities)
        self.layout = Layout(spec.data_path)
        self.supervisor = Supervisor(self.layout)

    # -- identity and secrets -----------------------------------------------------------
    def cluster_id(self) -> str:
        f = self.layout.cluster_id_file
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"{self.spec.cluster.name}-{uuid.uuid4().hex[:12]}\n")
        return f.read_text().strip()

    def secrets(self) -> Secrets:
        if not self.layout.secrets_file.exists():
            raise AirscaleError(
                f"no cluster at {self.layout.root}", "bring it up first: airscale up --spec FILE"
            )
        return load(self.layout.secrets_file)

    def components(self) -> list[Component]:
        runs_db = any(c.runs_database(self.spec) for c in self.capabilities)
        pg_bin = postgres.find_bin_dir(self.spec) if self.spec.database.url is None and not runs_db else None
        return components(self.spec, self.layout, pg_bin, self.capabilities)

    def airflow_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AIRFLOW_HOME=str(self.layout.airflow_home),
            AIRFLOW_CONFIG=str(self.layout.airflow_cfg),
            AIRSCALE_CLUSTER_ID=self.cluster_id(),
        )
        return env

    # -- up -----------------------------------------------------------------------------
    def up(self, progress: Progress = _quiet, dry_run: bool = False, upgrade: bool = False) -> UpResult:
        """Bring the cluster up, or apply the spec to the running cluster (airscale.runtime.apply).
        With `dry_run`: the plan only; every file is as it was and no process is touched.
        `upgrade`: `airscale upgrade` calls it with the Airflow components stopped and the
        database migrated; a plain `up` refuses a running cluster of another Airflow version."""
        spec, layout = self.spec, self.layout
        # Before anything else: a data folder that is not this cluster's is never touched.
        datadir.check_claimable(layout, spec.cluster.name, spec.base_dir)
        prereq.check_binaries(spec)
        prereq.check_dags_folder(spec)
        comps = self.components()
        running = self.supervisor.is_running()
        if running and not upgrade:
            problem = versions.upgrade_problem(self.running_versions(), versions.installed())
            if problem:
                raise AirscaleError(problem, f"upgrade it: airscale upgrade -s {spec.spec_file or 'SPEC'} (a backup, "
                                    "the migration with the Airflow components stopped, a smoke run, a rollback "
                                    "on failure); or install the Airflow version it runs again")
        if dry_run:
            return self._dry_run(comps, running)
        if not running:
            prereq.check_ports(spec, self.capabilities)
        datadir.claim(layout, spec.cluster.name, spec.base_dir)
        layout.make_dirs()
        check_shared_sockets(layout)
        if spec.database.url is None:
            postgres.check_reachable_by_postgres(layout)
        secrets, _ = load_or_create(layout.secrets_file)
        cluster_id = self.cluster_id()

        progress("writing configuration")
        self._write_configs(secrets, comps, cluster_id)
        changes: list[Change] = []
        replace: set[str] = set()
        record = apply.Record.load(layout)
        if running:
            # Every file first, then supervisord rereads: nothing running is stopped here.
            self._write_late_configs(secrets, progress)
            infos = self.supervisor.infos()
            later, removed = self.supervisor.reread(
                lambda n: infos.get(n, {}).get("statename") not in apply.ACTIVE)
            for name in removed:
                if infos.get(name, {}).get("statename") not in apply.ACTIVE:
                    self.supervisor.remove(name)
            replace = set(later)
            self._free_api_port(comps, infos, record, progress)
            now = apply.current_inputs(layout, comps)
            changes = self._plan(comps, record, now, infos, replace)
        else:
            progress("starting the process supervisor")
            layout.restarts_file.unlink(missing_ok=True)
            env = dict(os.environ, AIRSCALE_CLUSTER_ID=cluster_id)
            self.supervisor.start_daemon(env)
            self._write_late_configs(secrets, progress)
            now = apply.current_inputs(layout, comps)
            record.components.clear()

        started: list[str] = []
        for stage, group in groupby(sorted(comps, key=lambda c: c.stage), key=lambda c: c.stage):
            members = [c for c in group if c.autostart and c.kind != "worker"]
            members += workers_to_run(group_workers(comps, stage), self.supervisor.infos())
            if stage == 2:  # the database is up: prepare it before any Airflow component
                self._prepare_database(secrets, progress)
            if members:
                newly = self._start_stage(members, secrets, progress)
                started += newly
                for name in newly:
                    record.components[name] = now[name]
                record.save(layout)
        done = self._execute(changes, replace, now, record, secrets, progress)
        pool_changes = apply.plan_pools(spec, secrets, record, self._planned_default_pool(secrets))
        if pool_changes:
            apply.apply_pools(spec, secrets, pool_changes)
        record.pools = sorted(set(spec.pools) | {c.pool for c in pool_changes if c.action == "keep"})
        # Everything runs its new inputs now; a stopped worker reads them when it starts.
        record.components = {c.name: now[c.name] for c in comps}
        record.save(layout)
        for cap in self.capabilities:
            cap.started(spec, layout, secrets)
        # The admin password is told once, after the first successful `up`; `creds` repeats it.
        shown = layout.state / "admin-password-shown"
        first = not shown.exists()
        shown.touch()
        return UpResult(api_url(spec), secrets.admin_password if first else None, started,
                        applied=done, pools=pool_changes, was_running=running)

    def running_versions(self) -> versions.Versions | None:
        """The Airflow and airscale versions the cluster was last brought up with."""
        return versions.recorded(self.layout.versions_file, self.layout.migrated_file)

    def _write_configs(self, secrets: Secrets, comps: list[Component], cluster_id: str) -> None:
        spec, layout = self.spec, self.layout
        layout.versions_file.write_text(versions.installed().render())
        write_private(layout.airflow_cfg, render_airflow_cfg(spec, layout, secrets, self.capabilities))
        if spec.uses_celery and spec.broker.url is None:
            # Node 1 (the only one without ha.broker): as the primary, or a replica of the
            # node the Sentinels promoted (airscale.runtime.redis).
            write_node_configs(spec, layout, secrets, (1,))
        if not layout.admin_passwords.exists():
            write_private(layout.admin_passwords, json.dumps({"admin": secrets.admin_password}))
        layout.supervisord_conf.write_text(render_supervisord_conf(layout, comps, cluster_id))
        layout.keeper_config.write_text(json.dumps(keeper_config(spec, comps), indent=1))
        if api_servers.redundant(spec):
            api_servers.haproxy_cfg(layout).write_text(api_servers.haproxy_config(spec))
        for cap in self.capabilities:
            cap.write_configs(spec, layout, secrets, comps)

    def _free_api_port(self, comps: list[Component], infos: dict, record: apply.Record, progress: Progress) -> None:
        """Going from one api-server to several behind HAProxy (or back) moves the api port from
        one component to another: the old holder stops before the new one starts, a short
        outage of the UI and the APIs, once. Its old instances stop with the plan's other stops."""
        names = {c.name for c in comps}
        for old in (api_servers.API_SERVER, api_servers.API_PROXY):
            if old in names or infos.get(old, {}).get("statename") not in apply.ACTIVE:
                continue
            progress(f"stopping {old}: the api port moves to "
                     + ("HAProxy in front of the api-servers" if api_servers.redundant(self.spec) else "the api-server"))
            self.supervisor.stop(old)
            self._wait_stopped([old], timeout=60)
            self.supervisor.remove(old)
            record.components.pop(old, None)
            infos.pop(old, None)

    def _write_late_configs(self, secrets: Secrets, progress: Progress) -> None:
        """Files written once the supervisor runs: PostgreSQL's, the capabilities', PgBouncer's."""
        spec, layout = self.spec, self.layout
        if spec.database.url is None and not any(c.runs_database(spec) for c in self.capabilities):
            bin_dir = postgres.find_bin_dir(spec)
            if postgres.initialise(layout, bin_dir, secrets):
                progress("initialised PostgreSQL")
            postgres.write_config(spec, layout)
        for cap in self.capabilities:
            cap.prepare(spec, layout, secrets)
        from airscale.runtime import pgbouncer

        if pgbouncer.enabled(spec):
            pgbouncer.prepare(spec, layout, secrets, direct_database_url(spec, secrets))

    def _planned_default_pool(self, secrets: Secrets) -> int | None:
        return apply.planned_default_pool(self.spec, self.layout, secrets, self.capabilities)

    def _plan(self, comps: list[Component], record: apply.Record, now: dict, infos: dict,
              changed_programs: set[str]) -> list[Change]:
        old = apply.running_inputs(record, now, infos)
        active = {n for n, i in infos.items() if i.get("statename") in apply.ACTIVE and n != RESTART_LISTENER}
        wanted = {c.name for c in comps if c.autostart and c.kind != "worker"}
        wanted |= {c.name for stage in {c.stage for c in comps}
                   for c in workers_to_run(group_workers(comps, stage), infos)}
        return plan_changes(comps, old, now, active, wanted, changed_programs)

    def _dry_run(self, comps: list[Component], running: bool) -> UpResult:
        """The plan of `up`, with every file put back as it was (`apply.snapshot`)."""
        layout = self.layout
        if not running:
            changes = [Change(c.name, START, "the cluster is not running") for c in comps if c.autostart]
            return UpResult(api_url(self.spec), None, [], planned=changes, was_running=False)
        secrets = self.secrets()
        before = apply.snapshot(layout.root)
        try:
            self._write_configs(secrets, comps, self.cluster_id())
            self._write_late_configs(secrets, _quiet)
            now = apply.current_inputs(layout, comps)
        finally:
            apply.restore(layout.root, before)
        record = apply.Record.load(layout)
        changes = self._plan(comps, record, now, self.supervisor.infos(), set())
        pools = apply.plan_pools(self.spec, secrets, record, self._planned_default_pool(secrets))
        return UpResult(api_url(self.spec), None, [], planned=changes, pools=pools, was_running=True)

    # -- the apply plan, carried out (the pure plan: runtime.inputs; records: runtime.apply) --
    def _execute(self, changes: Sequence[Change], replace: set[str], now: Mapping[str, Fingerprint],
                 record: apply.Record, secrets: Secrets, progress: Progress) -> list[str]:
        """Carry out the reloads, restarts and stops of `changes` in their order (starts are the
        stage loop's); `replace`: groups whose supervisord section changed. Returns what was done."""
        by_name = {c.name: c for c in self.components()}
        infos = self.supervisor.infos()
        was_running = [c for c in by_name.values() if infos.get(c.name, {}).get("statename") in apply.ACTIVE]
        done: list[str] = []
        for ch in changes:
            c = by_name.get(ch.component)
            if ch.action == inputs.RELOAD:
                progress(f"reloading {ch.component} ({ch.reason})")
                self.supervisor.signal(ch.component, c.reload_signal)
            elif ch.action == inputs.RESTART:
                if inputs.is_data_store(c):
                    progress(f"restarting {ch.component} last ({ch.reason}): its clients lose their "
                             "connections for a few seconds and reconnect")
                else:
                    progress(f"restarting {ch.component} ({ch.reason})")
                self.supervisor.stop(ch.component)
                self._wait_stopped([ch.component], timeout=c.stopwaitsecs + 10)
                if ch.component in replace:
                    self.supervisor.replace(ch.component)
                self.supervisor.start(ch.component)
                self._start_stage([c], secrets, lambda _: None)
            elif ch.action == inputs.STOP:
                progress(f"stopping {ch.component} ({ch.reason})")
                self.supervisor.stop(ch.component)
                self._wait_stopped([ch.component], timeout=600)
                self.supervisor.remove(ch.component)
                record.components.pop(ch.component, None)
                record.save(self.layout)
                done.append(ch.describe().replace("stop ", "stopped ", 1))
                continue
            else:
                continue
            record.components[ch.component] = now[ch.component]
            record.save(self.layout)
            done.append(f"{'reloaded' if ch.action == inputs.RELOAD else 'restarted'} {ch.component} "
                        f"because {ch.reason}")
        if any(ch.action == inputs.RESTART and inputs.is_data_store(by_name[ch.component]) for ch in changes):
            # Clients that ended on the lost connections are being started again by the restart
            # listener: `up` is done once everything that ran runs and is healthy again.
            progress("waiting for every component to be healthy again")
            self._start_stage(was_running, secrets, lambda _: None)
        return done

    def _prepare_database(self, secrets: Secrets, progress: Progress) -> None:
        if self.spec.database.url is None:
            postgres.ensure_database(self.spec, secrets)
        else:
            self._check_external_database(secrets)
        marker = self.layout.migrated_file
        current = self._alembic_version(secrets)
        # The installed Airflow's version is part of the stamp: after an upgrade of the package
        # the database is still at the old revision, and only `db migrate` brings it forward.
        if marker.exists() and current and marker.read_text().strip() == _migrated_stamp(current):
            return
        self.migrate_database(secrets, progress)

    def migrate_database(self, secrets: Secrets, progress: Progress = _quiet) -> None:
        """Run the installed Airflow's `airflow db migrate` now, and stamp what it left."""
        marker = self.layout.migrated_file
        progress("migrating the metadata database (airflow db migrate)")
        log = self.layout.log_of("db-migrate")
        env = self.airflow_env()
        from airscale.runtime import pgbouncer

        if pgbouncer.enabled(self.spec):
            # Past PgBouncer: the migration lock is session-level. Airflow reads the URL from the
            # 0600 file (`_CMD`), so it is on no command line and in no environment.
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"] = f"cat {pgbouncer.direct_url_file(self.layout)}"
        self._drop_wakeup_triggers(secrets)
        start = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as out:
            rc = subprocess.run(
                [airflow_bin(), "db", "migrate"], env=env, stdout=out,
                stderr=subprocess.STDOUT, check=False,
            ).returncode
        if rc != 0:
            raise AirscaleError(f"airflow db migrate failed (exit {rc}): {_last_error(log, start)}", f"read {log}")
        marker.write_text(_migrated_stamp(self._alembic_version(secrets) or "") + "\n")

    def _drop_wakeup_triggers(self, secrets: Secrets) -> None:
        """The schedulers' wake-up triggers go before a migration (scheduler_wakeup.drop_sql says
        why) and come back when the schedulers start."""
        import psycopg2

        from airscale.runtime.scheduler_wakeup import drop_sql

        # Past PgBouncer, like the migration itself (it may not run yet).
        conn = psycopg2.connect(health.libpq_dsn(direct_database_url(self.spec, secrets)), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(drop_sql())
        finally:
            conn.close()

    def _check_external_database(self, secrets: Secrets) -> None:
        try:
            health.db_connect(self.spec, secrets, timeout=5).close()
        except Exception as e:  # psycopg2.Error or a bad DSN
            raise AirscaleError(
                f"cannot reach the database at database.url: {str(e).strip().splitlines()[0]}",
                "check that it runs and that the URL's host, port, user and password are right",
            ) from None

    def _alembic_version(self, secrets: Secrets) -> str | None:
        try:
            with health.db_connect(self.spec, secrets) as conn, conn.cursor() as cur:
                cur.execute("SELECT version_num FROM alembic_version")
                row = cur.fetchone()
            conn.close()
            return row[0] if row else None
        except Exception:
            return None

    def _start_stage(self, members: list[Component], secrets: Secrets, progress: Progress) -> list[str]:
        infos = self.supervisor.infos()
        to_start = [c for c in members if infos.get(c.name, {}).get("statename") != RUNNING]
        for c in to_start:
            self.supervisor.start(c.name)
        names = ", ".join(c.name for c in members)
        progress(f"waiting for {names}")
        deadline = time.monotonic() + STAGE_TIMEOUT
        while True:
            unhealthy = self._unhealthy(members, secrets)
            if not unhealthy:
                return [c.name for c in to_start]
            for name, detail in unhealthy.items():
                state = self.supervisor.info(name)["statename"]
                if state == "FATAL":
                    log = self.layout.log_of(name)
                    size = log.stat().st_size if log.exists() else 0
                    said = _last_error(log, start=max(0, size - 16384))
                    raise AirscaleError(
                        f"{name} keeps exiting at start ({detail}); its log says: {said}",
                        f"read its log: airscale logs {name}",
                    )
            if time.monotonic() > deadline:
                detail = "; ".join(f"{n}: {d}" for n, d in unhealthy.items())
                raise AirscaleError(
                    f"not healthy after {STAGE_TIMEOUT:.0f}s: {detail}",
                    f"read the logs: airscale logs {next(iter(unhealthy))}",
                )
            time.sleep(1.0)

    def _unhealthy(self, members: list[Component], secrets: Secrets) -> dict[str, str]:
        infos = self.supervisor.infos()
        states = {c.name: infos.get(c.name, {}).get("statename") for c in members}
        return not_ready(members, states, self.health_of(members, secrets))

    def health_of(self, comps: list[Component], secrets: Secrets) -> dict[str, health.Health]:
        out: dict[str, health.Health] = {}
        kinds = {c.kind for c in comps}
        beats = None
        if kinds & set(health.JOB_TYPES):
            try:
                beats = health.job_heartbeats(self.spec, secrets)
            except Exception as e:  # database not reachable
                beats = e
        pings = health.worker_pings(self.spec, secrets) if "worker" in kinds else set()
        proxy_states = (health.api_proxy_states(self.spec)
                        if api_servers.redundant(self.spec) and kinds & {"api-server", "api-proxy"} else None)
        for c in comps:
            if c.kind == "postgres":
                out[c.name] = health.postgres_health(self.spec, secrets)
            elif c.kind == "redis":
                out[c.name] = health.redis_health(self.spec, secrets, c.name)
            elif c.kind == "pgbouncer":
                from airscale.runtime import pgbouncer

                out[c.name] = health.Health(*pgbouncer.health(self.spec, secrets))
            elif c.kind == api_servers.API_SERVER:
                out[c.name] = health.api_server_health(self.spec, c.name, proxy_states)
            elif c.kind == api_servers.PROXY_KIND:
                out[c.name] = health.api_proxy_health(self.spec, proxy_states)
            elif c.kind in health.JOB_TYPES:
                if isinstance(beats, Exception):
                    out[c.name] = health.Health(False, "database unreachable")
                else:
                    out[c.name] = health.job_health(beats, c.name, c.kind)
            elif c.kind == FORKSERVER:
                ok = self.layout.forkserver_socket.exists()
                out[c.name] = health.Health(ok, "listening" if ok else "no socket yet")
            elif c.kind == "worker":
                ok = c.name in pings
                out[c.name] = health.Health(ok, "answers ping" if ok else "no ping reply")
            else:  # a capability's component (ha.database: a member's role and lag)
                owner = next((cap for cap in self.capabilities if c.kind in cap.health_kinds), None)
                if owner is not None:
                    out[c.name] = health.Health(*owner.health(self.spec, self.layout, c))
        return out

    def query(self, sql: str, *args) -> list[tuple]:
        """Rows of one query on the metadata database, on a short-lived connection."""
        conn = health.db_connect(self.spec, self.secrets())
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    # -- control by name ------------------------------------------------------------------
    def _require_running(self) -> None:
        if not self.supervisor.is_running():
            raise AirscaleError(
                f"cluster {self.spec.cluster.name!r} is not running (nothing at {self.layout.root})",
                "start it: airscale up --spec FILE",
            )

    def component(self, name: str) -> Component:
        for c in self.components():
            if c.name == name:
                return c
        names = ", ".join(c.name for c in self.components())
        raise AirscaleError(f"no component named {name!r}", f"choose one of: {names}")

    def start_component(self, name: str, wait: bool = True) -> None:
        self._require_running()
        c = self.component(name)
        self.supervisor.start(name)
        # It reads the files as they are now (a STARTING process already has its program).
        record = apply.Record.load(self.layout)
        record.components[name] = apply.current_inputs(self.layout, [c])[name]
        record.save(self.layout)
        if wait:
            self._start_stage([c], self.secrets(), _quiet)

    def stop_component(self, name: str, wait: bool = True) -> None:
        self._require_running()
        self.component(name)
        self.supervisor.stop(name)
        if wait:
            self._wait_stopped([name], timeout=self.component(name).stopwaitsecs + 10)

    def _wait_stopped(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = self.supervisor.infos()
            if all(infos.get(n, {}).get("statename") in STOPPED_STATES for n in names):
                return
            time.sleep(0.2)

    # -- down ----------------------------------------------------------------------------
    def down(self, purge: bool = False, progress: Progress = _quiet) -> list[int]:
        """Stop everything; returns PIDs that had to be killed after the graceful stop."""
        layout = self.layout
        if purge and layout.root.exists():
            # Refused before anything is stopped: the user asked for a purge that cannot happen.
            datadir.check_purge(layout, self.spec.cluster.name, self.spec.base_dir)
        cluster_id = self.cluster_id() if layout.cluster_id_file.exists() else None
        if self.supervisor.is_running():
            comps = self.components()
            infos = self.supervisor.infos()
            for stage in sorted({c.stage for c in comps}, reverse=True):
                names = [c.name for c in comps if c.stage == stage
                         and infos.get(c.name, {}).get("statename") not in STOPPED_STATES]
                if not names:
                    continue
                progress(f"stopping {', '.join(names)}")
                for n in names:
                    self.supervisor.stop(n)
                self._wait_stopped(names, timeout=max(c.stopwaitsecs for c in comps if c.name in names) + 10)
            progress("stopping the process supervisor")
            self.supervisor.shutdown()
        killed: list[int] = []
        if cluster_id:
            leftovers = procs.cluster_pids(cluster_id)
            if leftovers:
                progress(f"ending {len(leftovers)} leftover process(es): {procs.describe(leftovers)}")
                killed = procs.end_processes(leftovers)
        if purge and layout.root.exists():
            progress(f"removing {layout.root}")
            shutil.rmtree(layout.root)
            if not str(layout.supervisor_socket).startswith(str(layout.root)):
                layout.supervisor_socket.unlink(missing_ok=True)
        return killed

    # -- status --------------------------------------------------------------------------
    def status(self) -> list[dict]:
        """One row per component: name, pid, state, uptime, restarts, health."""
        self._require_running()
        secrets = self.secrets()
        comps = self.components()
        infos = self.supervisor.infos()
        try:
            restarts = json.loads(self.layout.restarts_file.read_text())
        except (FileNotFoundError, ValueError):
            restarts = {}
        running = [c for c in comps if infos.get(c.name, {}).get("statename") in (RUNNING, "STARTING")]
        healths = self.health_of(running, secrets)
        pending = apply.pending(self.layout, comps, infos)
        rows = []
        now = time.time()
        for c in comps:
            info = infos.get(c.name, {})
            state = info.get("statename", "UNKNOWN")
            if state == "STOPPED" and c.kind == "worker":
                state = "STANDBY"  # a stopped worker, there for the autoscaler or `airscale start`
            h = healths.get(c.name)
            track = restarts.get(c.name, {})
            rows.append(
                {
                    "component": c.name,
                    "pid": info.get("pid") or None,
                    "state": state,
                    "uptime": (now - info["start"]) if state == RUNNING and info.get("start") else None,
                    "restarts": track.get("restarts", 0),
                    "healthy": h.ok if h else None,
                    "health": h.detail if h else restart_plan(state, track, now),
                    "last_exit": track.get("last"),
                    "waiting_for": track.get("waiting_for") if state in ("EXITED", "FATAL") else None,
                    # Runs older inputs than the files say: `airscale up` restarts (or reloads) it.
                    "restart_pending": pending.get(c.name),
                }
            )
        return rows
