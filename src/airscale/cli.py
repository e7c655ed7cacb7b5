"""The `airscale` command line.

Every command reads the spec (`-s/--spec`, default ./airscale.yaml or $AIRSCALE_SPEC), every
command that prints results prints them as JSON with `--json`, and exit codes mean the same
everywhere (spec/cli_options.py declares the shared options and says why). Errors a person
can act on exit with code 2 and a message with the fix, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airscale.errors import AirscaleError
from airscale.spec import Spec, load_spec
from airscale.spec.cli_options import EXIT_CODES, JsonOption, SpecOption, print_json, spec_path
from airscale.spec.example import example_spec
from airscale.tuning.apply import counted_once

app = typer.Typer(
    help="Run Apache Airflow 3 at enterprise scale from one spec file (airscale.yaml).\n\n"
    "Example: airscale init && airscale up",
    epilog="Commands that read a cluster take -s/--spec FILE (or $AIRSCALE_SPEC); commands that "
    "print results print them as JSON with --json. " + EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console(soft_wrap=True)
# Messages are not wrapped at 80 columns when not on a terminal: logs and tests read whole lines.
err = Console(stderr=True, soft_wrap=True)



def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"airscale {version('airscale')}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print airscale's version and exit."),
) -> None:
    # One count of the DAG folder for the whole command: every configuration file it writes
    # reads the tuning plan, which a spec without a workload profile sizes from the folder.
    ctx.with_resource(counted_once())


def _spec(path: Path) -> Spec:
    return load_spec(path)


def _cluster(path: Path):
    from airscale.assembly import open_cluster

    return open_cluster(_spec(path))


@app.command()
def init(
    file: Path = typer.Argument(None, help="Where to write the example spec (same as --spec).",
                                show_default=False),
    spec: Path = typer.Option(Path("airscale.yaml"), "--spec", "-s", envvar="AIRSCALE_SPEC",
                              help="Where to write the example spec."),
    name: str = typer.Option("airscale", help="Cluster name."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented example spec; every field's description is a comment.

    Example: airscale init -s airscale.yaml --name analytics
    """
    file = spec_path(file, spec)
    if file.exists() and not force:
        raise AirscaleError(f"{file} already exists", "pass --force to overwrite it, or choose another path")
    file.write_text(example_spec(name))
    out.print(f"wrote {file}; check it with: airscale validate -s {file}", markup=False)


@app.command()
def validate(
    file: Path = typer.Argument(None, help="Spec file to check (same as --spec).", show_default=False),
    spec_file: Path = SpecOption,
    as_json: bool = JsonOption,
) -> None:
    """Check a spec file and print what it describes.

    Example: airscale validate -s examples/airscale.yaml
    """
    from airscale.tuning.cli import check_spec_memory, memory_json, memory_line

    file = spec_path(file, spec_file)
    spec = load_spec(file)
    fit = check_spec_memory(spec)  # exit 2 when the queues cannot fit

    ports = spec.ports
    if as_json:
        print_json({"ok": True, "spec": str(file), "cluster": spec.cluster.name,
                    "profile": spec.cluster.profile.value, "schedulers": spec.schedulers.count,
                    "queues": {n: q.model_dump() for n, q in spec.queues.items()},
                    "autoscaling": spec.autoscaling.enabled, "memory": memory_json(fit),
                    "ports": [ports.base, ports.base + 99], "listen_host": spec.cluster.listen_host})
        return
    queues = ", ".join(f"{n} ({q.min_workers}-{q.max_workers} workers x {q.concurrency})"
                       for n, q in spec.queues.items())
    out.print(f"[green]ok[/green] {escape(str(file))}: cluster {spec.cluster.name!r}, profile {spec.cluster.profile.value}, "
              f"{spec.schedulers.count} scheduler(s), queues: {queues}"
              f"{' (autoscaled)' if spec.autoscaling.enabled else ''}; "
              f"ports {ports.base}-{ports.base + 99} on {spec.cluster.listen_host}")
    out.print(f"  memory: {escape(memory_line(fit))}", highlight=False)


@app.command()
def up(
    spec: Path = SpecOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what `up` would restart, reload, start, stop "
                                 "and change in the database, and why; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result (or with --dry-run the plan) as JSON."),
) -> None:
    """Bring the cluster up, or apply the spec to the running cluster; safe to run again.

    Starts the database, broker, api-server, schedulers, dag-processor, triggerer and workers,
    each stage once the one before is healthy. On a running cluster it restarts exactly the
    components whose inputs (command, environment, configuration files) changed, one at a time
    (schedulers, api-server, dag-processor, triggerer, then workers drained first; PostgreSQL
    and Redis last), reloads Prometheus, Alertmanager, PgBouncer and PostgreSQL settings in
    place, and sizes the pools of the spec. See docs/operations.md.

    Example: airscale up --spec airscale.yaml --dry-run
    """
    from airscale.tuning.cli import check_spec_memory

    check_spec_memory(_spec(spec))  # before anything starts: exit 2 if it cannot fit
    cluster = _cluster(spec)
    t0 = time.monotonic()
    if dry_run:
        result = cluster.up(dry_run=True)
        _print_plan(cluster.spec.cluster.name, result, as_json)
        return
    with err.status("starting") as status:
        def progress(msg: str) -> None:
            status.update(escape(msg))
            err.print(f"[dim]{time.monotonic() - t0:5.1f}s[/dim] {escape(msg)}")

        result = cluster.up(progress)
    if as_json:
        print_json({"cluster": cluster.spec.cluster.name, "api_url": result.api_url, "started": result.started,
                    "applied": result.applied, "pools": [p.describe() for p in result.pools],
                    "seconds": round(time.monotonic() - t0, 1)})
        return
    out.print(f"[green]cluster {cluster.spec.cluster.name!r} is up[/green] ({time.monotonic() - t0:.0f}s)")
    if result.was_running:
        for line in result.applied + [p.describe() for p in result.pools]:
            out.print(f"  {line}", markup=False)
        if result.started:
            out.print(f"  started {', '.join(result.started)}", markup=False)
        if not (result.applied or result.pools or result.started):
            out.print("  nothing to change: every component runs the spec's inputs", markup=False)
    out.print(f"  Airflow UI and API: {result.api_url}  (user admin)", markup=False)
    if result.admin_password:
        out.print(f"  admin password (shown once; `airscale creds` shows it again): {result.admin_password}",
                  markup=False)
    from airscale.auth import passwords

    for login, password in passwords.take_unshown(cluster.layout, cluster.spec.auth.users).items():
        out.print(f"  password of {login} (shown once; `airscale creds --user {login}`): {password}", markup=False)
    out.print(f"  status: airscale status -s {spec}   logs: airscale logs NAME -s {spec}", markup=False)
    out.print(f"  stop:   airscale down -s {spec}", markup=False)


def _print_plan(name: str, result, as_json: bool) -> None:
    if as_json:
        print_json({"cluster": name, "running": result.was_running,
                    "changes": [{"component": c.component, "action": c.action, "reason": c.reason}
                                for c in result.planned],
                    "database": [{"pool": p.pool, "action": p.action, "slots": p.slots, "reason": p.reason}
                                 for p in result.pools]})
        return
    if not (result.planned or result.pools):
        out.print(f"cluster {name!r}: nothing would change", markup=False)
        return
    out.print(f"cluster {name!r}: `airscale up` would", markup=False)
    for c in result.planned:
        out.print(f"  {c.describe()}", markup=False)
    for p in result.pools:
        out.print(f"  {p.describe()}", markup=False)


@app.command()
def down(
    spec: Path = SpecOption,
    purge: bool = typer.Option(False, "--purge", help="Also delete the cluster's data (database, logs, secrets)."),
) -> None:
    """Stop the cluster in order; workers finish their running tasks first.

    The data is kept unless --purge.

    Example: airscale down --spec examples/airscale.yaml
    """
    cluster = _cluster(spec)
    with err.status("stopping") as status:
        killed = cluster.down(purge=purge, progress=lambda m: (status.update(escape(m)), err.print(m, markup=False)))
    if killed:
        out.print(f"[yellow]had to kill {len(killed)} process(es) that did not stop in time[/yellow]")
    out.print(f"cluster {cluster.spec.cluster.name!r} is down" + (" and its data removed" if purge else ""))


@app.command()
def status(
    spec: Path = SpecOption,
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON."),
) -> None:
    """Show each component: PID, state, uptime, restarts and health.

    Example: airscale status --spec examples/airscale.yaml
    """
    from airscale.runtime.health import age

    rows = _cluster(spec).status()
    if as_json:
        print_json(rows)
        return
    t = Table(title=f"cluster {_spec(spec).cluster.name}")
    for col in ("component", "pid", "state", "uptime", "restarts", "health"):
        t.add_column(col)
    for r in rows:
        colour = {True: "green", False: "red", None: "dim"}[r["healthy"]]
        pending = f" [yellow]{escape(r['restart_pending'])}[/yellow]" if r.get("restart_pending") else ""
        t.add_row(
            r["component"], str(r["pid"] or "-"), r["state"],
            age(time.time() - r["uptime"]) if r["uptime"] else "-",
            str(r["restarts"]), f"[{colour}]{escape(r['health'] or '-')}[/{colour}]{pending}",
        )
    out.print(t)
    from airscale.autoscale.cli import print_status as autoscale_status

    autoscale_status(spec, out)


@app.command()
def logs(
    component: str = typer.Argument(..., help="Component name, as `airscale status` lists them."),
    spec: Path = SpecOption,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(100, "--lines", "-n", help="How many of the last lines to print."),
) -> None:
    """Print a component's log (supervisor, db-migrate and restart-listener logs too).

    Example: airscale logs scheduler-1 -f
    """
    from airscale.runtime.layout import Layout

    layout = Layout(_spec(spec).data_path)
    path = layout.log_of(component)
    if not path.exists():
        known = sorted(p.stem for p in layout.logs.glob("*.log"))
        raise AirscaleError(f"no log for {component!r} at {path}", f"choose one of: {', '.join(known) or '(none yet)'}")
    args = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    os.execvp("tail", args)


@app.command()
def creds(
    spec: Path = SpecOption,
    user: str = typer.Option("admin", "--user", help="Whose password: admin or a login of auth.users."),
    as_json: bool = JsonOption,
) -> None:
    """Show the Airflow UI address, a user and its password (admin by default).

    Example: airscale creds --spec examples/airscale.yaml --user alice
    """
    from airscale.auth import passwords
    from airscale.runtime.airflow_config import api_url

    cluster = _cluster(spec)
    s = cluster.secrets()
    password = s.admin_password if user == "admin" else passwords.password_of(cluster.layout, user)
    if as_json:
        print_json({"url": api_url(cluster.spec), "user": user, "password": password})
        return
    out.print(f"url: {api_url(cluster.spec)}\nuser: {user}\npassword: {password}", markup=False)


@app.command()
def start(component: str = typer.Argument(..., help="Component name."), spec: Path = SpecOption) -> None:
    """Start one component of a running cluster and wait until it is healthy.

    Example: airscale start worker-default-2
    """
    _cluster(spec).start_component(component)
    out.print(f"{component} started")


@app.command()
def stop(component: str = typer.Argument(..., help="Component name."), spec: Path = SpecOption) -> None:
    """Stop one component (a worker finishes its running tasks first).

    Example: airscale stop worker-default-2
    """
    _cluster(spec).stop_component(component)
    out.print(f"{component} stopped")


@app.command()
def restart(component: str = typer.Argument(..., help="Component name."), spec: Path = SpecOption) -> None:
    """Restart one component: stop it gracefully, start it, wait until healthy.

    Example: airscale restart scheduler-2
    """
    cluster = _cluster(spec)
    cluster.stop_component(component)
    cluster.start_component(component)
    out.print(f"{component} restarted")


@app.command()
def trigger(
    dag_id: str = typer.Argument(..., help="DAG to run."),
    spec: Path = SpecOption,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the run to its end."),
    timeout: float = typer.Option(600, help="Seconds to wait for the run."),
    as_json: bool = JsonOption,
) -> None:
    """Unpause and trigger a DAG through the REST API, follow it, and print each task's result.

    Exit 1 if the run did not succeed.

    Example: airscale trigger airscale_demo_fanout --json
    """
    from airscale.runtime.airflow_config import api_url
    from airscale.workload.client import AirflowClient

    cluster = _cluster(spec)
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    with err.status(f"waiting for DAG {dag_id} to be parsed"):
        client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    run_id = client.trigger(dag_id)
    if not as_json:
        out.print(f"triggered {dag_id} run {run_id}", markup=False)
    if not wait:
        if as_json:
            print_json({"dag_id": dag_id, "run_id": run_id, "state": "queued", "tasks": []})
        return
    with err.status("running") as st:
        def poll(state, counts, total):
            done = counts.get("success", 0) + counts.get("failed", 0)
            st.update(f"run {state}: {done}/{total} tasks finished "
                      + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))

        result = client.wait_for_run(dag_id, run_id, timeout, on_poll=poll)
    if as_json:
        print_json({"dag_id": dag_id, "run_id": run_id, "state": result.state,
                    "tasks": [{k: ti.get(k) for k in ("task_id", "state", "hostname", "queue", "duration",
                                                       "try_number")}
                              for ti in sorted(result.tasks, key=lambda x: x["task_id"])]})
    else:
        t = Table(title=escape(f"{dag_id} {run_id}: {result.state}"))
        for col in ("task", "state", "worker", "queue", "duration s"):
            t.add_column(col)
        for ti in sorted(result.tasks, key=lambda x: x["task_id"]):
            t.add_row(ti["task_id"], ti["state"] or "-", ti.get("hostname") or "-", ti.get("queue") or "-",
                      f"{ti['duration']:.2f}" if ti.get("duration") else "-")
        out.print(t)
    if result.state != "success":
        raise typer.Exit(1)


@app.command()
def schema(
    out_file: Path = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    markdown: bool = typer.Option(False, "--markdown", help="The field reference (docs/spec.md) instead of "
                                  "the JSON Schema."),
) -> None:
    """Print the spec's JSON Schema, for editors that complete and check airscale.yaml.

    With the YAML language server (VS Code's YAML extension, ...), put this first line in the
    spec: # yaml-language-server: $schema=airscale.schema.json

    Example: airscale schema --out airscale.schema.json
    """
    from airscale.spec import reference

    text = reference.markdown() if markdown else json.dumps(reference.json_schema(), indent=2) + "\n"
    if out_file is None:
        sys.stdout.write(text)
        return
    out_file.write_text(text)
    err.print(f"wrote {out_file}")


# Options after Airflow's first argument are Airflow's (allow_interspersed_args): `-s` is
# `--start-date` to `airflow dags backfill`, and `dags --help` is Airflow's help, not ours.
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "allow_interspersed_args": False})
def airflow(ctx: typer.Context, spec: Path = SpecOption) -> None:
    """Run Airflow's own CLI against this cluster: airscale airflow [-s FILE] ARGS...

    Airflow reads the cluster's airflow.cfg, database and DAGs (its AIRFLOW_HOME and
    AIRFLOW_CONFIG). ARGS go to Airflow verbatim and the exit code is Airflow's; give -s/--spec
    before them.

    Example: airscale airflow -s airscale.yaml dags list-import-errors
    """
    from airscale.runtime.components import airflow_bin

    cluster = _cluster(spec)
    if not cluster.layout.airflow_cfg.exists():
        raise AirscaleError(f"cluster {cluster.spec.cluster.name!r} has no Airflow configuration yet "
                            f"({cluster.layout.airflow_cfg})", f"bring it up first: airscale up -s {spec}")
    binary = airflow_bin()
    if not Path(binary).exists():
        raise AirscaleError(f"Airflow's CLI is not at {binary}", "run airscale from the environment Airflow is "
                            "installed in")
    # exec: Airflow gets the terminal and signals, and its exit code is ours.
    os.execve(binary, [binary, *ctx.args], cluster.airflow_env())


@app.command()
def autoscale(
    spec: Path = SpecOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Decide and log, but start or stop nothing."),
    once: bool = typer.Option(False, "--once", help="Make one decision per queue, then exit."),
    kubernetes: bool = typer.Option(False, "--kubernetes", help="Run inside Kubernetes (the rendered Deployment): "
                                    "export the desired workers for KEDA and write worker pods' deletion cost."),
    metrics_port: int = typer.Option(None, "--metrics-port", help="Port of the autoscaler's metrics; default: "
                                     "the autoscaler port of the spec's block."),
) -> None:
    """Run the autoscaler in the foreground: Celery workers per queue follow the load.

    Example: airscale autoscale --spec examples/airscale.yaml --dry-run --once
    """
    from airscale.autoscale.cli import run as run_autoscaler

    run_autoscaler(_spec(spec), dry_run=dry_run, once=once, console=out, kubernetes=kubernetes,
                    metrics_port=metrics_port)


@app.command()
def backup(
    spec: Path = SpecOption,
    out_file: Path = typer.Option(None, "--out", "-o", show_default=False,
                                  help="Archive to write (default: a new time-stamped name in backup.dir)."),
    as_json: bool = JsonOption,
) -> None:
    """Write one archive (mode 0600) of a running cluster: a consistent dump of the metadata
    database (pg_dump), the spec, the secrets and the generated configuration.

    The archive holds the cluster's secrets: keep it where only its operators can read it.

    Example: airscale backup -s airscale.yaml --out /backups/analytics.tar
    """
    from airscale.backup.take import take_backup
    from airscale.runtime.layout import Layout

    s = _spec(spec)
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        err.print(f"[dim]{time.monotonic() - t0:5.1f}s[/dim] {escape(msg)}")

    r = take_backup(s, Layout(s.data_path).secrets_file, out_file, progress)
    if as_json:
        print_json({"path": str(r.path), "size": r.size, "seconds": round(r.seconds, 1), "manifest": r.manifest})
        return
    out.print(f"wrote {r.path} ({r.size / 1e6:.1f} MB, {r.seconds:.0f}s; Airflow {r.manifest['airflow_version']}, "
              f"revision {r.manifest['alembic_revision']})", markup=False)
    out.print(f"  restore: airscale restore {r.path} -s SPEC --data-dir EMPTY_DIR", markup=False)


@app.command()
def restore(
    file: Path = typer.Argument(..., help="An archive written by `airscale backup`."),
    spec: Path = SpecOption,
    data_dir: Path = typer.Option(None, "--data-dir", show_default=False,
                                  help="Empty folder to restore into, when the spec file is written "
                                  "from the archive (default: the archived spec's data_dir)."),
    as_json: bool = JsonOption,
) -> None:
    """Bring a backup back into an EMPTY data folder, then bring the cluster up.

    With an existing spec file (-s), the cluster runs under it (another base_port or data_dir
    than the original's, for example). Without one, the archive's spec is written there, with
    --data-dir as its data_dir. A non-empty data folder, a damaged or foreign archive, or one of
    a newer Airflow is refused; a restore that fails midway leaves the folder as it was.

    Example: airscale restore backups/airscale-analytics-20260101T000000Z.tar -s restored.yaml --data-dir /srv/airscale/restored
    """
    import yaml

    from airscale.assembly import CAPABILITIES, open_cluster
    from airscale.backup import archive
    from airscale.backup.restore import read_manifest, restore as restore_archive
    from airscale.spec.load import parse_spec

    t0 = time.monotonic()

    def progress(msg: str) -> None:
        err.print(f"[dim]{time.monotonic() - t0:5.1f}s[/dim] {escape(msg)}")

    progress(f"checking {file}")
    manifest = read_manifest(file)
    new_spec_text = None
    if spec.exists():
        s = load_spec(spec)
        if data_dir is not None and data_dir.resolve() != s.data_path.resolve():
            raise AirscaleError(f"--data-dir {data_dir} differs from cluster.data_dir of {spec} ({s.data_path})",
                                f"set cluster.data_dir in {spec}, or leave out --data-dir")
    else:
        text = (archive.read_member(file, archive.SPEC) or b"").decode()
        if data_dir is not None:
            data = yaml.safe_load(text) or {}
            data.setdefault("cluster", {})["data_dir"] = str(data_dir.resolve())
            text = "# Restored by airscale from " + str(file.resolve()) + "\n" + yaml.safe_dump(data, sort_keys=False)
        s = parse_spec(text, spec)
        new_spec_text = text
    r = restore_archive(file, s, CAPABILITIES, progress, manifest)
    if new_spec_text is not None:
        spec.write_text(new_spec_text)
        progress(f"wrote the spec {spec}")
    cluster = open_cluster(load_spec(spec))
    try:
        cluster.up(progress)
    except AirscaleError as e:
        raise AirscaleError(f"the data is restored in {r.data_dir}, but `up` failed: {e.problem}",
                            f"{e.fix + '; then ' if e.fix else ''}run: airscale up -s {spec}") from None
    if as_json:
        print_json({"data_dir": str(r.data_dir), "spec": str(spec), "seconds": round(time.monotonic() - t0, 1),
                    "manifest": r.manifest})
        return
    out.print(f"[green]restored[/green] {escape(str(file))} (taken {escape(str(r.manifest.get('created')))}) into "
              f"{escape(str(r.data_dir))}; cluster {cluster.spec.cluster.name!r} is up "
              f"({time.monotonic() - t0:.0f}s)")
    out.print(f"  status: airscale status -s {spec}", markup=False)


@app.command()
def upgrade(
    spec: Path = SpecOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the versions found and the steps; change nothing."),
    force: bool = typer.Option(False, "--force", help="Run every step even when the versions match: a rehearsal."),
    backup_out: Path = typer.Option(None, "--backup", show_default=False,
                                    help="Where the backup taken first goes (default: backup.dir, "
                                    "airscale-<cluster>-pre-upgrade-<UTC time>.tar)."),
    smoke_dag: str = typer.Option(None, "--smoke-dag", show_default=False,
                                  help="A DAG of yours for the smoke run (default: airscale's airscale_smoke, "
                                  "written into the DAGs folder)."),
    smoke_timeout: float = typer.Option(600, "--smoke-timeout", help="Seconds the smoke run may take."),
    as_json: bool = JsonOption,
) -> None:
    """Upgrade the running cluster to the Airflow (and airscale) installed now, with a rollback.

    Install the new version into this environment first (pip install -c constraints.txt ...).
    Steps: check the versions (the cluster's recorded ones and its database's revision against
    the installed Airflow), a backup, stop the Airflow components (workers drained), `airflow db
    migrate`, start them again with the new version (`up`), a smoke DAG run. If a step fails,
    the database is restored from the backup, the configuration put back and the cluster started
    again where the previous version can run; the message names the step, the backup and how to
    retry or go back. Exit 0: upgraded or nothing to upgrade; 1: failed and rolled back; 2: refused.

    Example: pip install -c constraints.txt apache-airflow==3.3.2 && airscale upgrade -s airscale.yaml --dry-run
    """
    from airscale.backup import upgrade as upg

    cluster = _cluster(spec)
    upg.check_cluster(cluster)
    facts = upg.gather_facts(cluster)
    plan = upg.plan_upgrade(facts, force=force)
    name = cluster.spec.cluster.name
    if plan.action == upg.REFUSE:
        raise AirscaleError(f"upgrade refused: {plan.reason}; nothing was changed",
                            f"install the Airflow the cluster runs ({facts.running_airflow}) or a newer one, "
                            "then run airscale upgrade again")
    if plan.action == upg.NOTHING or dry_run:
        outcome = upg.Outcome(name, plan, facts)
        if as_json:
            print_json({**outcome.as_json(), "dry_run": dry_run})
            return
        if plan.action == upg.NOTHING:
            out.print(f"cluster {name!r}: {plan.reason}", markup=False)
            return
        out.print(f"cluster {name!r}: `airscale upgrade` would ({plan.reason})", markup=False)
        for i, step in enumerate(plan.steps, start=1):
            out.print(f"  {i}. {step.name}: {step.detail}", markup=False)
        return
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        err.print(f"[dim]{time.monotonic() - t0:5.1f}s[/dim] {escape(msg)}")

    progress(f"upgrading cluster {name!r}: {plan.reason}")
    try:
        outcome = upg.run_upgrade(cluster, plan, facts, backup_out=backup_out, smoke_dag=smoke_dag,
                                  smoke_timeout=smoke_timeout, progress=progress)
    except upg.UpgradeFailed as e:
        if as_json:
            print_json({**e.outcome.as_json(), "failed_step": e.step, "error": e.problem, "rollback": e.rollback})
        raise
    if as_json:
        print_json({**outcome.as_json(), "seconds": round(time.monotonic() - t0, 1)})
        return
    out.print(f"[green]cluster {name!r} upgraded[/green] to Airflow {facts.installed_airflow} "
              f"({time.monotonic() - t0:.0f}s)")
    for r in outcome.steps:
        out.print(f"  {r.step} ({r.seconds:.0f}s): {r.detail}", markup=False)
    out.print(f"  backup taken before the upgrade: {outcome.backup}", markup=False)


from airscale.deploy.cli import render_app, worker_app  # noqa: E402
from airscale.auth.cli import audit_command, users_app  # noqa: E402

app.add_typer(users_app, name="users")
app.command("audit")(audit_command)

app.add_typer(render_app, name="render")
app.add_typer(worker_app, name="worker")

from airscale.bench.cli import bench_command  # noqa: E402
from airscale.dbcare.cli import app as db_app  # noqa: E402
from airscale.tuning.cli import plan_command  # noqa: E402

app.command("plan")(plan_command)
app.add_typer(db_app, name="db")
app.command("bench")(bench_command)

from airscale.drills.cli import drill_command  # noqa: E402

app.command("drill")(drill_command)

from airscale.soak.cli import soak_command  # noqa: E402

app.command("soak")(soak_command)

from airscale.observe.cli import (  # noqa: E402
    alerts_app,
    dashboards_app,
    exporter_command,
    top_command,
)

app.add_typer(alerts_app, name="alerts")
app.add_typer(dashboards_app, name="dashboards")
app.command("top")(top_command)
app.command("exporter")(exporter_command)


def main() -> None:
    try:
        app()
    except AirscaleError as e:
        # The problem and fix quote spec text (names, paths, values) literally: a '[/a]' in
        # it is text, not rich markup.
        err.print(f"[red]error:[/red] {escape(e.problem)}", highlight=False)
        if e.fix:
            err.print(f"  [bold]fix:[/bold] {escape(e.fix)}", highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
