"""`airscale users ...` and `airscale audit`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airscale.auth import audit, passwords, users
from airscale.auth.sync import person_of
from airscale.errors import AirscaleError
from airscale.spec.auth import ADMIN_LOGIN, BUILTIN_ROLES, Login, Role, UserSpec, unknown_role
from airscale.spec.cli_options import JsonOption, SpecOption, print_json

users_app = typer.Typer(
    help="People who log in to the cluster and their roles (auth manager FAB).\n\n"
    "The spec's auth.users is the source of truth: `airscale up` creates and updates the users it "
    "names and deactivates every other one. These commands change a running cluster now, for "
    "what cannot wait for the next `up`; write lasting changes into the spec.\n\n"
    "Example: airscale users add alice --role User -s airscale.yaml",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

RoleOption = typer.Option(..., "--role", help="Admin, Op, User, Viewer, Public, or a role of the spec's auth.roles.")


def _cluster(spec: Path):
    from airscale.runtime.cluster import Cluster
    from airscale.spec import load_spec

    s = load_spec(spec)
    users.require_fab(s)
    return Cluster(s, ())  # only its layout, secrets and database


def _login(value: str) -> str:
    try:
        return TypeAdapter(Login).validate_python(value)
    except ValidationError as e:
        raise AirscaleError(f"login: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def _user_spec(role: str, email: str | None, name: str | None, custom: Collection[str] = ()) -> UserSpec:
    # Built-in roles in any case (--role viewer); the spec's own roles as written.
    canonical = {r.value.lower(): r.value for r in Role}.get(role.lower(), role)
    known = ", ".join([*BUILTIN_ROLES, *sorted(custom)])
    try:
        user = UserSpec(role=canonical, email=email, name=name)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "role"
        raise AirscaleError(f"--{field}: {first['msg'].removeprefix('Value error, ')}", f"roles: {known}") from None
    if problem := unknown_role(user.role, set(custom)):
        raise AirscaleError(f"--role: {problem}", f"roles: {known}")
    return user


def _refuse_directory_person(cluster, login: str, what: str) -> None:
    """With a directory, a login that exists in Airflow without an airscale password is one of its
    people: a password set here would let them in past the directory."""
    if users.directory_on(cluster.spec) and login not in passwords.load(cluster.layout) and any(
            p.login == login for p in users.existing(cluster.spec, cluster.secrets())):
        raise AirscaleError(f"{login!r} logs in through the LDAP directory; airscale cannot {what}",
                            "change it in the directory (groups decide the role at each login); "
                            f"`airscale users remove {login}` locks the person out")


@users_app.command("list")
def list_users(spec: Path = SpecOption, as_json: bool = JsonOption) -> None:
    """List Airflow's users: role, e-mail, active, whether the spec names them, and (with
    auth.ldap) whether they log in through the directory.

    Example: airscale users list --json
    """
    cluster = _cluster(spec)
    named = {ADMIN_LOGIN, *cluster.spec.auth.users}
    local = set(passwords.load(cluster.layout)) if users.directory_on(cluster.spec) else None
    rows = [{"login": p.login, "roles": sorted(p.roles), "email": p.email,
             "name": f"{p.first_name} {p.last_name}".strip(), "active": p.active, "in_spec": p.login in named,
             "directory": local is not None and p.login not in local}
            for p in users.existing(cluster.spec, cluster.secrets())]
    if as_json:
        print_json(rows)
        return
    t = Table()
    for col in ("login", "role", "e-mail", "name", "active", "in spec", *(("directory",) if local is not None else ())):
        t.add_column(col)
    for r in rows:
        cells = [r["login"], ",".join(r["roles"]), r["email"], r["name"], "yes" if r["active"] else "no",
                 "yes" if r["in_spec"] else "no", *(("yes" if r["directory"] else "no",) if local is not None else ())]
        t.add_row(*(escape(str(v)) for v in cells))
    out.print(t)


@users_app.command("add")
def add(
    login: str = typer.Argument(..., help="Login: lower-case letters, digits, '.', '_', '-'."),
    role: str = RoleOption,
    email: str = typer.Option(None, help="E-mail address; default LOGIN@airscale.invalid."),
    name: str = typer.Option(None, help="Full name; default the login."),
    spec: Path = SpecOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a user now (or change the role, e-mail and name of an existing one) and print a
    new user's password once. Add it to the spec's auth.users too, or the next `up` deactivates it.

    Example: airscale users add bob --role Viewer --email bob@example.com
    """
    login = _login(login)
    if login == ADMIN_LOGIN:
        raise AirscaleError("`admin` is the cluster's own administrator", "choose another login")
    cluster = _cluster(spec)
    person = person_of(login, _user_spec(role, email, name, cluster.spec.auth.roles))
    _refuse_directory_person(cluster, login, "give them a role or a password")
    existed = any(p.login == login for p in users.existing(cluster.spec, cluster.secrets()))
    # An existing user keeps its password (reset-password replaces it).
    pw = None if existed else passwords.ensure(cluster.layout, [login])[login]
    report = users.sync(cluster.layout, [person], {login: pw} if pw else {}, deactivate_others=False)
    passwords.applied(cluster.layout, [login])
    in_spec = login in cluster.spec.auth.users
    if as_json:
        print_json({"login": login, "created": not existed, "password": pw,
                    "actions": report["actions"], "in_spec": in_spec})
    else:
        out.print(f"{'updated' if existed else 'created'} {login} (role {person_role(person)})", markup=False)
        if not existed:
            out.print(f"  password (shown once; `airscale creds --user {login}` shows it again): {pw}", markup=False)
    if not in_spec:
        err.print(f"note: {login} is not in the spec's auth.users: the next `airscale up` deactivates it",
                  markup=False)


def person_role(person) -> str:
    return ",".join(sorted(person.roles))


@users_app.command("remove")
def remove(login: str = typer.Argument(..., help="Login to deactivate."), spec: Path = SpecOption,
           as_json: bool = JsonOption) -> None:
    """Deactivate a user now: it can no longer log in, and its name stays in the audit log.

    Example: airscale users remove bob
    """
    login = _login(login)
    if login == ADMIN_LOGIN:
        raise AirscaleError("`admin` cannot be removed: airscale's own tools log in with it",
                            "rotate its password instead: airscale users reset-password admin")
    cluster = _cluster(spec)
    if not any(p.login == login for p in users.existing(cluster.spec, cluster.secrets())):
        raise AirscaleError(f"the cluster has no user {login!r}", "see airscale users list")
    report = users.deactivate(cluster.layout, login)
    if as_json:
        print_json({"login": login, "actions": report["actions"]})
    else:
        out.print(f"deactivated {login}", markup=False)
    if login in cluster.spec.auth.users:
        err.print(f"note: {login} is in the spec's auth.users: the next `airscale up` activates it again; "
                  "remove it there", markup=False)


@users_app.command("reset-password")
def reset_password(login: str = typer.Argument(..., help="Login whose password to replace."),
                   spec: Path = SpecOption, as_json: bool = JsonOption) -> None:
    """Give a user a new generated password, print it once, and end its sessions.

    Example: airscale users reset-password alice
    """
    login = _login(login)
    cluster = _cluster(spec)
    if not any(p.login == login for p in users.existing(cluster.spec, cluster.secrets())):
        raise AirscaleError(f"the cluster has no user {login!r}", "see airscale users list")
    _refuse_directory_person(cluster, login, "set their password")
    pw = passwords.new_password()
    users.reset_password(cluster.layout, login, pw)
    passwords.set_password(cluster.layout, login, pw)  # after Airflow took it: the file stays right
    if as_json:
        print_json({"login": login, "password": pw})
        return
    out.print(f"new password of {login} (shown once; `airscale creds --user {login}` shows it again): {pw}",
              markup=False)


def audit_command(
    spec: Path = SpecOption,
    since: str = typer.Option("24h", help="How far back: 30m, 2h, 7d, 1w, or an ISO time."),
    user: str = typer.Option(None, "--user", help="Only this login's actions."),
    dag: str = typer.Option(None, "--dag", help="Only actions on this DAG."),
    limit: int = typer.Option(1000, min=1, max=audit.MAX_ROWS, help="At most this many (the newest)."),
    tasks: bool = typer.Option(False, "--tasks", help="Also each task's state changes (running, success, "
                               "...), logged under the DAG's owner attribute rather than a person."),
    as_json: bool = JsonOption,
) -> None:
    """Who did what, from Airflow's event log: each API action with the person who made it
    (trigger_dag_run, patch_dag, ...), and Airflow commands with the Unix account.

    Example: airscale audit --since 2h --user alice --json
    """
    from airscale.runtime.cluster import Cluster
    from airscale.spec import load_spec

    cluster = Cluster(load_spec(spec), ())
    q = audit.query(audit.parse_since(since, datetime.now(UTC)), user, dag, limit, tasks)
    try:
        rows = cluster.query(q.sql, *q.params)
    except AirscaleError:
        raise
    except Exception as e:  # psycopg2.OperationalError: the database is down
        raise AirscaleError(f"cannot read the event log: {str(e).strip().splitlines()[0]}",
                            "bring the cluster up: airscale up") from None
    events = [audit.event_of(r) for r in rows]
    if as_json:
        print_json([e.as_json() for e in events])
        return
    t = Table()
    for col in ("when (UTC)", "user", "event", "dag", "task", "details"):
        t.add_column(col)
    for e in events:
        details = e.extra if isinstance(e.extra, str) else ", ".join(
            f"{k}={v}" for k, v in (e.extra or {}).items() if k not in ("host_name",))
        t.add_row(*(escape(str(v)) for v in (e.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), e.user or "-",
                                             e.event, e.dag_id or "-", e.task_id or "-", details[:120])))
    out.print(t)
