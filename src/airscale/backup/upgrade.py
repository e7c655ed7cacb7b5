"""`airscale upgrade`: a running cluster onto the Airflow (and airscale) installed now.

The user installs the new version into the environment (pip), then runs `airscale upgrade`.
Its steps, each announced as it starts:

1. check: the versions the cluster was brought up with (`state/versions.conf`,
   airscale.runtime.versions) and the database's alembic revision, against the installed
   Airflow and its newest migration. A downgrade, or a database newer than the installed
   Airflow knows, is refused before anything changes. Nothing to upgrade: it says so.
2. backup: `airscale backup` of the running cluster (airscale.backup.take), under a name the
   scheduled backups' retention never deletes.
3. stop: Airflow's upgrade guide asks that no Airflow component runs while `airflow db migrate`
   runs. The daemons that would start or touch them stop first (autoscaler, liveness, the
   db-cleaner, the scheduled backup, the exporter), then the schedulers (nothing new is
   scheduled), the dag-processor and the triggerer, then the workers, drained (their running
   tasks finish and report to the api-server, which still runs), then the api-server.
   PostgreSQL, PgBouncer, Redis, Patroni and monitoring keep running.
4. migrate: the installed Airflow's `airflow db migrate`.
5. restart: `up` (the apply machinery): the stopped components start stage by stage with the
   new version; every other component whose inputs changed (the versions file is one of
   them) restarts one at a time.
6. smoke: a DAG run (airscale's two-task `airscale_smoke`, written into the DAGs folder at
   the check, or `--smoke-dag`) triggered through the REST API must succeed.

On a failure from the stop on, the rollback stops the Airflow components again, restores the
database from the backup when the migration had begun (into a new database, swapped in by name:
the failed one is kept aside, see `restore.restore_database_in_place`), puts back the
configuration files as they were before the upgrade, and starts the cluster again if the
Airflow it ran before is what its processes would run (the same version, or another
environment that is still there); otherwise it leaves the Airflow components stopped and says
to install the previous version again and run `airscale up`.

`plan_upgrade` and `stop_order` are the pure decisions (tables in tests/unit).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packaging.version import InvalidVersion, Version

from airscale.backup.restore import installed_migrations
from airscale.errors import AirscaleError
from airscale.runtime.component import Component

Progress = Callable[[str], None]

CHECK, BACKUP, STOP, MIGRATE, RESTART, SMOKE = "check", "backup", "stop", "migrate", "restart", "smoke"
UPGRADE, NOTHING, REFUSE = "upgrade", "nothing", "refuse"

SMOKE_DAG = "airscale_smoke"
SMOKE_FILE = "airscale_smoke.py"
SMOKE_SOURCE = f'''"""The smoke run of `airscale upgrade` (written by airscale; safe to delete).

Two tasks: the second reads the first's XCom, so a run that succeeds went through the
scheduler, the executor, the Execution API of the api-server and the metadata database."""
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{SMOKE_DAG}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, tags=["airscale"])
def airscale_smoke():
    @task
    def hello() -> str:
        return "ok"

    @task
    def check(value: str) -> None:
        assert value == "ok", value

    check(hello())


airscale_smoke()
'''

# What must not run while `airflow db migrate` runs: Airflow's components, and airscale's
# daemons that start them (autoscaler), kill them (liveness) or query the metadata database
# (db-cleaner, backup, exporter), in the order they stop (`stop_order`). Positive, not "all
# but the data stores": a component not named here keeps running (PostgreSQL, HAProxy,
# PgBouncer, Redis, Sentinels, Patroni, etcd, Prometheus, Alertmanager, the reclaimer).
STOP_ORDER = (
    ("autoscaler", "liveness", "db-cleaner", "backup", "exporter"),
    ("scheduler",),
    ("dag-processor", "triggerer"),
    ("worker",),
    ("worker-forkserver",),
    ("api-server",),
)


@dataclass(frozen=True)
class Facts:
    """What the check found (the inputs of `plan_upgrade`)."""

    running_airflow: str | None  # recorded at the last `up`; None: not recorded
    installed_airflow: str
    running_airscale: str | None
    installed_airscale: str
    db_revision: str | None
    head_revision: str | None  # the installed Airflow's newest migration
    revision_known: bool  # the database's revision is one of the installed Airflow's migrations


@dataclass(frozen=True)
class Step:
    name: str
    detail: str


@dataclass(frozen=True)
class Plan:
    action: str  # upgrade | nothing | refuse
    reason: str
    steps: tuple[Step, ...] = ()

    @property
    def migrates(self) -> bool:
        return any(s.name == MIGRATE for s in self.steps)


def _older(a: str, b: str) -> bool:
    try:
        return Version(a) < Version(b)
    except InvalidVersion:
        return False


def plan_upgrade(f: Facts, force: bool = False) -> Plan:
    """What `airscale upgrade` does for these facts (pure).

    - a downgrade (installed older than running) or a database at a revision the installed
      Airflow does not know: refused, nothing changes (Airflow migrates no database down);
    - Airflow, airscale and the database at the installed versions: nothing, unless `force`
      (a rehearsal of every step at the same version);
    - Airflow differs, or the database is behind the installed head, or the running version
      is not recorded: every step, the migration with the Airflow components stopped;
    - only airscale differs: no migration, so nothing stops: the components restart one at a
      time (the apply), then the smoke run.
    """
    frm = f.running_airflow or "unknown (not recorded)"
    if f.running_airflow and _older(f.installed_airflow, f.running_airflow):
        return Plan(REFUSE, f"the installed Airflow {f.installed_airflow} is older than the {f.running_airflow} the "
                    "cluster runs: Airflow cannot migrate a database down")
    if f.db_revision and not f.revision_known:
        return Plan(REFUSE, f"the database is at alembic revision {f.db_revision}, which the installed Airflow "
                    f"{f.installed_airflow} does not know (a newer Airflow migrated it)")
    airflow_same = f.running_airflow == f.installed_airflow
    schema_current = f.db_revision is not None and f.db_revision == f.head_revision
    airscale_same = f.running_airscale in (None, "", f.installed_airscale)
    versions = f"Airflow {frm} -> {f.installed_airflow}"
    if f.running_airscale and not airscale_same:
        versions += f", airscale {f.running_airscale} -> {f.installed_airscale}"
    schema = (f"database at the installed Airflow's newest migration {f.head_revision}" if schema_current
              else f"database revision {f.db_revision} -> {f.head_revision}")
    full = (Step(CHECK, f"{versions}; {schema}"),
            Step(BACKUP, "airscale backup of the running cluster (pg_dump), kept out of the scheduled retention"),
            Step(STOP, "stop what must not run during the migration: airscale's daemons that touch Airflow, the "
                 "schedulers, dag-processor and triggerer, the workers (drained), then the api-server"),
            Step(MIGRATE, f"airflow db migrate with the installed Airflow {f.installed_airflow}"),
            Step(RESTART, "airscale up: the stopped components start with the installed versions, stage by stage; "
                 "other components whose inputs changed restart one at a time"),
            Step(SMOKE, "trigger a smoke DAG run through the REST API and wait for it to succeed"))
    if airflow_same and schema_current and airscale_same:
        if force:
            return Plan(UPGRADE, f"--force: every step at the same version (Airflow {f.installed_airflow}), "
                        "a rehearsal", full)
        return Plan(NOTHING, f"nothing to upgrade: the cluster runs Airflow {f.installed_airflow}"
                    + (f" and airscale {f.installed_airscale}" if f.running_airscale else "")
                    + f", the installed versions, and its database is at revision {f.db_revision}")
    if airflow_same and schema_current and not force:
        return Plan(UPGRADE, f"airscale {f.running_airscale} -> {f.installed_airscale} with the same Airflow and "
                    "schema: no migration, so the components restart one at a time (no stop)",
                    (full[0], full[1],
                     Step(RESTART, "airscale up: every component whose inputs changed (the versions file) restarts "
                          "one at a time, in the rolling order"), full[5]))
    reason = (f"the database is behind the installed Airflow {f.installed_airflow} ({schema})"
              if airflow_same and not schema_current else versions + ("; --force: every step" if force else ""))
    return Plan(UPGRADE, reason, full)


def stop_order(comps: Sequence[Component], running: Collection[str]) -> list[list[str]]:
    """The groups of running components `stop` stops, group after group (pure); the members
    of a group stop together (the workers drain side by side)."""
    out = []
    for kinds in STOP_ORDER:
        group = [c.name for c in comps if c.kind in kinds and c.name in running]
        if group:
            out.append(group)
    return out


def migration_heads(revisions: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The heads of a migration graph (revision -> its down revisions): revisions no other
    revision follows (pure)."""
    below = {d for downs in revisions.values() for d in downs}
    return sorted(r for r in revisions if r not in below)


# -- carrying it out ------------------------------------------------------------------------------
@dataclass
class StepResult:
    step: str
    seconds: float
    detail: str


@dataclass
class Outcome:
    cluster: str
    plan: Plan
    facts: Facts
    backup: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    smoke_run: str | None = None

    def as_json(self) -> dict:
        return {"cluster": self.cluster, "action": self.plan.action, "reason": self.plan.reason,
                "from": {"airflow": self.facts.running_airflow, "airscale": self.facts.running_airscale,
                         "revision": self.facts.db_revision},
                "to": {"airflow": self.facts.installed_airflow, "airscale": self.facts.installed_airscale,
                       "revision": self.facts.head_revision},
                "plan": [asdict(s) for s in self.plan.steps],
                "steps": [asdict(s) for s in self.steps], "backup": self.backup, "smoke_run": self.smoke_run}


class UpgradeFailed(AirscaleError):
    """A step failed; the rollback ran (exit code 1: the upgrade did not happen)."""

    exit_code = 1

    def __init__(self, problem: str, fix: str, outcome: Outcome, step: str, rollback: list[str]):
        super().__init__(problem, fix)
        self.outcome, self.step, self.rollback = outcome, step, rollback


def gather_facts(cluster) -> Facts:
    from airscale.backup.take import alembic_revision
    from airscale.runtime import versions

    now = versions.installed()
    running = cluster.running_versions()
    migrations = installed_migrations()
    heads = migration_heads(migrations)
    revision = alembic_revision(cluster.spec, cluster.secrets())
    return Facts(running.airflow if running else None, now.airflow, (running.airscale or None) if running else None,
                 now.airscale, revision, heads[0] if len(heads) == 1 else None,
                 revision is None or revision in migrations)


def check_cluster(cluster) -> None:
    """Refusals before anything changes: a cluster that is not running, an external database
    (the rollback restores into the embedded one only)."""
    spec = cluster.spec
    if not cluster.supervisor.is_running():
        raise AirscaleError(f"cluster {spec.cluster.name!r} is not running",
                            f"bring it up with the version it ran (airscale up -s {spec.spec_file}), then run "
                            "`airscale upgrade` on the running cluster")
    if spec.database.url is not None:
        raise AirscaleError("database.url: `airscale upgrade` rolls back into the embedded database only",
                            "upgrade by hand: airscale backup, airscale down, install, airscale up "
                            "(docs/operations.md#upgrade)")


def backup_name(cluster: str, when: datetime) -> str:
    """Outside the scheduled backups' names (`take.archive_pattern`): retention never deletes it."""
    return f"airscale-{cluster}-pre-upgrade-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}.tar"


def run_upgrade(cluster, plan: Plan, facts: Facts, *, backup_out: Path | None = None,
                smoke_dag: str | None = None, smoke_timeout: float = 600.0,
                progress: Progress = lambda _: None) -> Outcome:
    """Carry out `plan` on the running `cluster`; roll back and raise UpgradeFailed when a step fails."""
    from airscale.backup.take import take_backup
    from airscale.runtime import apply

    spec, layout = cluster.spec, cluster.layout
    outcome = Outcome(spec.cluster.name, plan, facts)
    names = [s.name for s in plan.steps]
    total = len(names)
    dag_id = smoke_dag or SMOKE_DAG
    before = apply.snapshot(layout.root)  # the configuration as it was: what a rollback puts back
    running_before = {n for n, i in cluster.supervisor.infos().items() if i.get("statename") in apply.ACTIVE}
    state = {"migration_began": False, "stopped": []}
    t_all = time.monotonic()

    def announce(i: int, step: Step) -> None:
        progress(f"[{i}/{total}] {step.name}: {step.detail}")

    for i, step in enumerate(plan.steps, start=1):
        announce(i, step)
        t0 = time.monotonic()
        try:
            detail = ""
            if step.name == CHECK:
                if smoke_dag is None and _install_smoke_dag(spec.dags_path):
                    detail = f"wrote the smoke DAG {SMOKE_FILE} into {spec.dags_path}"
            elif step.name == BACKUP:
                out = backup_out or spec.backup_path / backup_name(spec.cluster.name, datetime.now(UTC))
                r = take_backup(spec, layout.secrets_file, out, lambda m: progress(f"  {m}"),
                                airflow_version=facts.running_airflow)
                outcome.backup = str(r.path)
                detail = f"{r.path} ({r.size / 1e6:.1f} MB)"
            elif step.name == STOP:
                comps = cluster.components()
                for group in stop_order(comps, running_before):
                    progress(f"  stopping {', '.join(group)}")
                    for n in group:
                        cluster.supervisor.stop(n)
                    state["stopped"] += group
                    wait = max(c.stopwaitsecs for c in comps if c.name in group) + 10
                    cluster._wait_stopped(group, timeout=wait)
                    still = [n for n in group if cluster.supervisor.info(n).get("statename") in apply.ACTIVE]
                    if still:
                        raise AirscaleError(f"{', '.join(still)} did not stop within {wait:.0f}s")
                detail = f"stopped {len(state['stopped'])} component(s)"
            elif step.name == MIGRATE:
                state["migration_began"] = True
                cluster.migrate_database(cluster.secrets(), lambda m: None)
                detail = f"database at revision {cluster._alembic_version(cluster.secrets())}"
            elif step.name == RESTART:
                result = cluster.up(lambda m: progress(f"  {m}"), upgrade=True)
                again = [n for n in state["stopped"] if n not in result.started
                         and cluster.supervisor.info(n).get("statename") not in apply.ACTIVE]
                for n in again:  # workers above min_workers that ran before (the autoscaler's, by hand)
                    cluster.start_component(n)
                detail = "; ".join(result.applied) or f"started {len(result.started)} component(s)"
            elif step.name == SMOKE:
                outcome.smoke_run = _smoke(cluster, dag_id, smoke_timeout)
                detail = f"{dag_id} run {outcome.smoke_run} succeeded"
        except (AirscaleError, Exception) as e:  # noqa: BLE001 - every failure rolls back
            cause = e.problem if isinstance(e, AirscaleError) else f"{type(e).__name__}: {e}"
            outcome.steps.append(StepResult(step.name, round(time.monotonic() - t0, 1), f"failed: {cause}"))
            progress(f"  {step.name} failed: {cause}")
            if step.name in (CHECK, BACKUP):
                raise UpgradeFailed(
                    f"upgrade failed at step {step.name}: {cause}",
                    "nothing was changed (no component was stopped, the database is as it was); fix the cause "
                    f"and run the same `airscale upgrade -s {spec.spec_file}` again", outcome, step.name, []) from None
            done = rollback(cluster, facts, outcome.backup, state["migration_began"], before, progress)
            raise UpgradeFailed(f"upgrade failed at step {step.name}: {cause}",
                                _failure_fix(spec, facts, outcome.backup, done, step.name), outcome, step.name,
                                done) from None
        outcome.steps.append(StepResult(step.name, round(time.monotonic() - t0, 1), detail))
        if detail:
            progress(f"  {detail}")
    progress(f"upgrade done in {time.monotonic() - t_all:.0f}s")
    return outcome


ROLLED_BACK_RUNNING = "cluster running the previous version"


def rollback(cluster, facts: Facts, backup: str | None, migration_began: bool,
             before: Mapping, progress: Progress) -> list[str]:
    """Undo a failed upgrade as far as it went; returns what was done, one line each."""
    from airscale.backup.restore import restore_database_in_place
    from airscale.runtime import apply, versions

    done: list[str] = []
    progress("rolling back")
    comps = cluster.components()
    infos = cluster.supervisor.infos()
    running = {n for n, i in infos.items() if i.get("statename") in apply.ACTIVE}
    try:
        for group in stop_order(comps, running):
            for n in group:
                cluster.supervisor.stop(n)
            cluster._wait_stopped(group, timeout=max(c.stopwaitsecs for c in comps if c.name in group) + 10)
        if migration_began and backup:
            progress(f"  restoring the database from {backup}")
            aside = restore_database_in_place(cluster.spec, cluster.secrets(), Path(backup), cluster.layout,
                                              lambda m: progress(f"  {m}"))
            done.append(f"restored the database from {backup}; the database as the failed step left it is kept "
                        f"as {aside} (DROP DATABASE {aside} once it is not needed)")
        apply.restore(cluster.layout.root, before)
        done.append("put the configuration files back as they were before the upgrade")
        now = versions.installed()
        previous = cluster.running_versions()
        same = facts.running_airflow in (None, now.airflow)
        other_env = previous is not None and previous.python and previous.python != now.python \
            and Path(previous.python).exists()
        if same:
            progress("  starting the cluster again (airscale up)")
            cluster.up(lambda m: progress(f"  {m}"))
            done.append(ROLLED_BACK_RUNNING)
        elif other_env:
            progress(f"  starting the cluster again with the previous environment ({previous.python} -m airscale up)")
            proc = subprocess.run([previous.python, "-m", "airscale.cli", "up", "-s", str(cluster.spec.spec_file)],
                                  capture_output=True, text=True, check=False, timeout=900)
            if proc.returncode != 0:
                done.append(f"starting it with {previous.python} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
            else:
                done.append(ROLLED_BACK_RUNNING)
        else:
            done.append(f"left the Airflow components stopped: the installed Airflow {now.airflow} is not the "
                        f"{facts.running_airflow} the restored database belongs to")
    except Exception as e:  # noqa: BLE001 - say how far the rollback got
        cause = e.problem if isinstance(e, AirscaleError) else f"{type(e).__name__}: {e}"
        done.append(f"the rollback itself failed: {cause}")
    for line in done:
        progress(f"  {line}")
    return done


# Where to read more about a step's failure.
LOOK_AT = {STOP: "airscale status and the named component's log (airscale logs NAME)",
           MIGRATE: "airscale logs db-migrate",
           RESTART: "airscale status and the named component's log (airscale logs NAME)",
           SMOKE: "airscale logs api-server, airscale logs scheduler-1, and the smoke run's task logs"}


def _failure_fix(spec, facts: Facts, backup: str | None, done: list[str], step: str) -> str:
    spec_arg = f"-s {spec.spec_file}"
    parts = ["; ".join(done) + "." if done else ""]
    if ROLLED_BACK_RUNNING in done:
        parts.append(f"To retry: fix the cause (see {LOOK_AT.get(step, 'the message above')}) and run `airscale "
                     f"upgrade {spec_arg}` again.")
    else:
        parts.append(f"To go back: install Airflow {facts.running_airflow} again (pip install "
                     f"apache-airflow=={facts.running_airflow} with its constraints) and run `airscale up {spec_arg}`.")
    if backup:
        parts.append(f"The backup taken before the upgrade is {backup}: `airscale restore {backup} {spec_arg}` "
                     "brings it back into an empty data folder.")
    return " ".join(p for p in parts if p)


def _install_smoke_dag(dags: Path) -> bool:
    path = dags / SMOKE_FILE
    if path.exists() and path.read_text() == SMOKE_SOURCE:
        return False
    path.write_text(SMOKE_SOURCE)
    return True


def _smoke(cluster, dag_id: str, timeout: float) -> str:
    """Trigger `dag_id` and wait for its run to succeed. Right after the restart the api-server
    can be slow to answer (every worker's tasks call its Execution API at once, a backlog of
    queued tasks with them): each call is tried again until the deadline, not given up after
    its first timeout. A trigger tried again may make a second run; the smoke waits for one."""
    import httpx

    from airscale.runtime.airflow_config import api_url
    from airscale.workload.client import AirflowClient

    deadline = time.monotonic() + timeout

    def patiently(call):
        while True:
            try:
                return call()
            except (httpx.TransportError, AirscaleError) as e:
                transient = isinstance(e, httpx.TransportError) or "cannot reach" in getattr(e, "problem", "")
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(5)

    password = cluster.secrets().admin_password
    client = patiently(lambda: AirflowClient(api_url(cluster.spec), "admin", password, timeout=30))
    try:
        patiently(lambda: client.wait_for_dag(dag_id, timeout=max(1.0, min(300.0, deadline - time.monotonic()))))
        patiently(lambda: client.unpause(dag_id))
        run_id = patiently(lambda: client.trigger(dag_id))
        result = client.wait_for_run(dag_id, run_id, max(1.0, deadline - time.monotonic()))
    finally:
        client.close()
    if result.state != "success":
        failed = sorted(ti["task_id"] for ti in result.tasks if ti.get("state") != "success")
        raise AirscaleError(f"the smoke run {run_id} of {dag_id} ended {result.state} (not successful: "
                            f"{', '.join(failed) or 'none'})")
    return run_id
