"""Changing a running cluster's users: runs `airscale.auth.fab_helper` with the cluster's
Airflow environment, the request (with passwords) on its stdin, never on a command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from airscale.auth import passwords
from airscale.auth.sync import Action, Person, RoleAction, plan, plan_roles, wanted_people, wanted_roles
from airscale.errors import AirscaleError
from airscale.runtime.health import db_connect
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

# Airflow's import and FAB's app take 5-15 s on a busy 2-core host.
HELPER_TIMEOUT = 180


def fab_on(spec: Spec) -> bool:
    return spec.auth.manager == "fab"


def require_fab(spec: Spec) -> None:
    if not fab_on(spec):
        raise AirscaleError("auth.manager is 'simple': the cluster has only the `admin` login",
                            "set auth.manager: fab in the spec and run airscale up")


def run_helper(layout: Layout, request: dict) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=str(layout.airflow_home), AIRFLOW_CONFIG=str(layout.airflow_cfg))
    log = layout.log_of("users")
    try:
        with open(log, "ab") as err:
            proc = subprocess.run([sys.executable, "-m", "airscale.auth.fab_helper"], input=json.dumps(request),
                                  env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                                  timeout=HELPER_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise AirscaleError(f"changing the cluster's users took over {HELPER_TIMEOUT}s", f"read {log}") from None
    if proc.returncode != 0:
        raise AirscaleError(f"changing the cluster's users failed (exit {proc.returncode})", f"read {log}")
    return json.loads(proc.stdout)


def wire(people: Iterable[Person]) -> list[dict]:
    return [{**asdict(p), "roles": sorted(p.roles)} for p in people]


def sync(layout: Layout, wanted: list[Person], new_passwords: dict[str, str], deactivate_others: bool) -> dict:
    """Create or update `wanted` (a created user gets its password from `new_passwords`)."""
    return run_helper(layout, {"wanted": wire(wanted), "deactivate_others": deactivate_others,
                               "passwords": {p.login: new_passwords[p.login] for p in wanted
                                             if p.login in new_passwords}})


def deactivate(layout: Layout, login: str) -> dict:
    return run_helper(layout, {"deactivate": [login]})


def reset_password(layout: Layout, login: str, password: str) -> dict:
    return run_helper(layout, {"reset": [login], "passwords": {login: password}})


# FAB's tables (airflow/providers/fab/auth_manager/models): one row per user, roles through ab_user_role.
_USERS_SQL = """
SELECT u.username, u.email, u.first_name, u.last_name, coalesce(u.active, false),
       coalesce(array_agg(r.name) FILTER (WHERE r.name IS NOT NULL), '{}')
FROM ab_user u LEFT JOIN ab_user_role ur ON ur.user_id = u.id LEFT JOIN ab_role r ON r.id = ur.role_id
GROUP BY u.id ORDER BY u.username
"""


_ROLES_SQL = """
SELECT r.name, a.name, v.name
FROM ab_role r JOIN ab_permission_view_role pvr ON pvr.role_id = r.id
JOIN ab_permission_view pv ON pv.id = pvr.permission_view_id
JOIN ab_permission a ON a.id = pv.permission_id JOIN ab_view_menu v ON v.id = pv.view_menu_id
WHERE r.name = ANY(%s)
"""
_ROLE_NAMES_SQL = "SELECT name FROM ab_role WHERE name = ANY(%s)"


def existing_roles(spec: Spec, secrets: Secrets, names: list[str]) -> dict[str, frozenset[tuple[str, str]]]:
    """The permissions of the roles `names` that Airflow has (a role without any maps to an empty set)."""
    import psycopg2

    if not names:
        return {}
    conn = db_connect(spec, secrets, timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(_ROLE_NAMES_SQL, (names,))
            out: dict[str, set] = {name: set() for (name,) in cur.fetchall()}
            cur.execute(_ROLES_SQL, (names,))
            for role, action, resource in cur.fetchall():
                out[role].add((action, resource))
    except psycopg2.errors.UndefinedTable:
        return {}
    finally:
        conn.close()
    return {name: frozenset(perms) for name, perms in out.items()}


def _roles_file(layout: Layout) -> Path:
    """The roles airscale defined (from any spec so far): a role gone from the spec is emptied."""
    return layout.state / "auth-roles.json"


def defined_roles(layout: Layout) -> list[str]:
    try:
        return json.loads(_roles_file(layout).read_text())
    except FileNotFoundError:
        return []


def wire_roles(actions: Iterable[RoleAction]) -> list[dict]:
    return [{"name": a.name, "create": a.create, "add": [list(p) for p in a.add],
             "remove": [list(p) for p in a.remove]} for a in actions]


def directory_on(spec: Spec) -> bool:
    return fab_on(spec) and spec.auth.ldap is not None


def managed_logins(spec: Spec, layout: Layout) -> list[str] | None:
    """Logins `up` may deactivate: with a directory, only those airscale gave a password (the
    others are the directory's people); without, any login (None)."""
    return sorted(passwords.load(layout)) if directory_on(spec) else None


def existing(spec: Spec, secrets: Secrets) -> list[Person]:
    """Airflow's users as they are, read straight from the database (no Airflow start-up)."""
    import psycopg2

    conn = db_connect(spec, secrets, timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(_USERS_SQL)
            rows = cur.fetchall()
    except psycopg2.errors.UndefinedTable:  # FAB's tables not created yet
        return []
    finally:
        conn.close()
    return [Person(login, frozenset(roles), email or "", first or "", last or "", bool(active))
            for login, email, first, last, active, roles in rows]


def sync_spec(spec: Spec, layout: Layout, secrets: Secrets) -> list[Action]:
    """Make Airflow's users match the spec; the helper (and its 5-15 s start) only when they differ.

    A login that got its password just now but already existed in Airflow gets it set too:
    otherwise `airscale creds --user` would show a password that does not work."""
    roles = wanted_roles(spec)
    retired = [r for r in defined_roles(layout) if r not in roles]
    role_actions = plan_roles(roles, existing_roles(spec, secrets, [*roles, *retired]), retired)
    wanted = wanted_people(spec)
    have = existing(spec, secrets)
    managed = managed_logins(spec, layout)
    actions = plan(wanted, have, deactivate_others=True, managed=managed)
    known = {p.login for p in have}
    reset = [login for login in passwords.unapplied(layout) if login in known]
    if actions or reset or role_actions:
        stored = passwords.load(layout)
        run_helper(layout, {"roles": wire_roles(role_actions), "wanted": wire(wanted), "deactivate_others": True,
                            "managed": managed, "reset": reset,
                            "passwords": {p.login: stored[p.login] for p in wanted if p.login in stored}})
    passwords.applied(layout)
    _roles_file(layout).write_text(json.dumps(sorted(set(defined_roles(layout)) | set(roles))))
    return actions
