"""Changing a running cluster's users: runs `airscale.auth.fab_helper` with the cluster's
Airflow environment, the request (with passwords) on its stdin, never on a command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict

from airscale.auth import passwords
from airscale.auth.sync import Action, Person, plan, wanted_people
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
    wanted = wanted_people(spec)
    have = existing(spec, secrets)
    actions = plan(wanted, have, deactivate_others=True)
    known = {p.login for p in have}
    reset = [login for login in passwords.unapplied(layout) if login in known]
    if actions or reset:
        stored = passwords.load(layout)
        run_helper(layout, {"wanted": wire(wanted), "deactivate_others": True, "reset": reset,
                            "passwords": {p.login: stored[p.login] for p in wanted if p.login in stored}})
    passwords.applied(layout)
    return actions
