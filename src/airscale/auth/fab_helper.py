"""Change Airflow's FAB users in-process: `python -m airscale.auth.fab_helper`, run with a
cluster's AIRFLOW_HOME and AIRFLOW_CONFIG.

Airflow's `airflow users create --password` puts the password on a command line, where `ps`
and /proc show it to every local user. This helper reads its request as JSON on stdin
(passwords included), uses FAB's security manager as `airflow users` does, and writes a JSON
report without passwords on stdout. Request:

  {"roles": [{"name", "create", "add": [[action, resource]...], "remove": [...]}...],
   "wanted": [Person fields...], "deactivate_others": bool, "managed": [login...] | null,
   "deactivate": [login...], "passwords": {login: password}, "reset": [login...], "list_only": bool}

`roles` (`airscale.auth.sync.plan_roles`) are applied first, so that users can have them;
`wanted` users are created or updated (`airscale.auth.sync.plan`); a created user gets its
password from `passwords`; logins in `reset` get theirs set anew.
"""

from __future__ import annotations

import json
import logging
import sys

from airscale.auth.sync import Action, Kind, Person, plan


def _existing(sm) -> list[Person]:
    return [Person(u.username, frozenset(r.name for r in u.roles), u.email or "", u.first_name or "",
                   u.last_name or "", bool(u.active)) for u in sm.get_all_users()]


def _role(sm, name: str):
    role = sm.find_role(name)
    if role is None:  # the api-server creates the built-in roles when it starts; do it if it has not
        sm.sync_roles()
        role = sm.find_role(name)
    if role is None:
        raise SystemExit(f"Airflow has no role {name!r}")
    return role


def _apply_role(sm, action: dict) -> None:
    role = sm.find_role(action["name"])
    if role is None:
        role = sm.add_role(action["name"])
    for action_name, resource_name in action["add"]:
        # Creates the action and the resource if Airflow has not yet (a DAG not parsed yet).
        perm = sm.create_permission(action_name, resource_name)
        if perm is None:
            raise SystemExit(f"could not create the permission {action_name} on {resource_name!r}")
        sm.add_permission_to_role(role, perm)
    for action_name, resource_name in action["remove"]:
        perm = sm.get_permission(action_name, resource_name)
        if perm is not None:
            sm.remove_permission_from_role(role, perm)


def _apply(sm, action: Action, passwords: dict[str, str]) -> None:
    if action.kind is Kind.deactivate:
        user = sm.find_user(username=action.login)
        user.active = False
        if not sm.update_user(user):
            raise SystemExit(f"could not deactivate {action.login!r}")
        return
    t = action.target
    roles = [_role(sm, r) for r in sorted(t.roles)]
    if action.kind is Kind.create:
        if action.login not in passwords:
            raise SystemExit(f"no password for new user {action.login!r}")
        sm.add_user(t.login, t.first_name, t.last_name, t.email, roles, passwords[action.login])
        return
    user = sm.find_user(username=action.login)
    user.roles, user.email, user.first_name, user.last_name, user.active = (
        roles, t.email, t.first_name, t.last_name, True)
    if not sm.update_user(user):
        raise SystemExit(f"could not update {action.login!r}")


def run(request: dict) -> dict:
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        if request.get("list_only"):
            return {"users": [_public(p) for p in _existing(sm)]}
        wanted = [Person(w["login"], frozenset(w["roles"]), w["email"], w["first_name"], w["last_name"])
                  for w in request.get("wanted", [])]
        existing = _existing(sm)
        for role_action in request.get("roles", []):
            _apply_role(sm, role_action)
        actions = plan(wanted, existing, bool(request.get("deactivate_others")), request.get("managed"))
        active = {p.login for p in existing if p.active}
        actions += [Action(Kind.deactivate, login) for login in request.get("deactivate", [])
                    if login in active and all(a.login != login for a in actions)]
        passwords = request.get("passwords", {})
        for action in actions:
            _apply(sm, action, passwords)
        for login in request.get("reset", []):
            user = sm.find_user(username=login)
            if user is None or not sm.reset_password(user.id, passwords[login]):
                raise SystemExit(f"could not set the password of {login!r}")
        return {"actions": [{"kind": a.kind.value, "login": a.login, "changes": list(a.changes)}
                            for a in actions],
                "roles": [r["name"] for r in request.get("roles", [])],
                "reset": list(request.get("reset", []))}


def _public(p: Person) -> dict:
    return {"login": p.login, "roles": sorted(p.roles), "email": p.email,
            "name": f"{p.first_name} {p.last_name}".strip(), "active": p.active}


def main() -> None:
    # FAB logs each change at INFO; stdout carries only the JSON report.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    request = json.load(sys.stdin)
    report, sys.stdout = sys.stdout, sys.stderr  # what Airflow and FAB print goes to the log
    result = run(request)
    json.dump(result, report)


if __name__ == "__main__":
    main()
