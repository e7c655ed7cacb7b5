"""What to change in Airflow's user table so that it matches the spec (pure).

`plan(wanted, existing)` compares the people of the spec (plus `admin`) with the users Airflow
has and returns one action per login that differs: create, update (role, e-mail, name, or an
inactive user the spec names again) or deactivate. Users are deactivated rather than deleted:
Airflow's audit log stores the login as text, and a deleted user could be recreated by
someone else under the same name, who would then inherit the history.

With an LDAP directory (`auth.ldap`) people of the directory get a row in Airflow's user table
at their first login; `up` leaves them alone: only the logins airscale gave a password
(`managed`) are deactivated when the spec stops naming them.

`plan_roles(wanted, existing)` does the same for the roles the spec defines (`auth.roles`):
create a missing one, set the permissions of one that differs; a role airscale defined
earlier and the spec no longer names is emptied (its people keep the name, not the rights).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from airscale.spec import Spec
from airscale.spec.auth import ADMIN_LOGIN, Role, UserSpec, email_of


@dataclass(frozen=True)
class Person:
    """A user as airscale wants it, or as Airflow has it (`roles` and `active` then as stored)."""

    login: str
    roles: frozenset[str]
    email: str
    first_name: str
    last_name: str = ""
    active: bool = True


class Kind(str, Enum):
    create = "create"
    update = "update"
    deactivate = "deactivate"


@dataclass(frozen=True)
class Action:
    kind: Kind
    login: str
    # For an update: which of role, email, name, active differ (the reason, shown to the user).
    changes: tuple[str, ...] = field(default=())
    target: Person | None = None  # what the user becomes (create, update)


def person_of(login: str, user: UserSpec) -> Person:
    # FAB keeps first and last name apart; the spec has one `name`, split at its first space.
    first, _, last = (user.name or login).partition(" ")
    return Person(login, frozenset({user.role}), email_of(login, user), first, last)


def wanted_people(spec: Spec) -> list[Person]:
    """Everyone who should be able to log in: `admin` (role Admin) and the spec's users."""
    users = {ADMIN_LOGIN: UserSpec(role=Role.Admin.value, name="Admin")} | dict(spec.auth.users)
    return [person_of(login, u) for login, u in users.items()]


def _differences(want: Person, have: Person) -> tuple[str, ...]:
    out = []
    if want.roles != have.roles:
        out.append("role")
    if want.email.lower() != have.email.lower():
        out.append("email")
    if (want.first_name, want.last_name) != (have.first_name, have.last_name):
        out.append("name")
    if not have.active:
        out.append("active")
    return tuple(out)


def plan(wanted: Iterable[Person], existing: Iterable[Person], deactivate_others: bool = True,
         managed: Collection[str] | None = None) -> list[Action]:
    """Actions that make `existing` match `wanted`, in a stable order (wanted first, by the
    order given, then deactivations by login). Nothing to do -> no actions.

    `deactivate_others`: `up` passes True (the spec is the whole truth); `airscale users add`
    passes False (it changes one person). `managed`: only these logins may be deactivated
    (with a directory, the rest are its people); None: any.
    """
    have: Mapping[str, Person] = {p.login.lower(): p for p in existing}
    wanted = list(wanted)
    actions: list[Action] = []
    for want in wanted:
        current = have.get(want.login.lower())
        if current is None:
            actions.append(Action(Kind.create, want.login, target=want))
        elif changes := _differences(want, current):
            actions.append(Action(Kind.update, want.login, changes, target=want))
    if deactivate_others:
        names = {w.login.lower() for w in wanted}
        for login in sorted(have):
            if login not in names and have[login].active and (
                    managed is None or have[login].login in managed):
                actions.append(Action(Kind.deactivate, have[login].login))
    return actions


@dataclass(frozen=True)
class RoleAction:
    """Create role `name` or set its permissions: to `add` what it lacks, take `remove` away."""

    name: str
    create: bool
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[tuple[str, str], ...] = ()


def wanted_roles(spec: Spec) -> dict[str, frozenset[tuple[str, str]]]:
    """The spec's own roles with their permissions, as Airflow keeps them."""
    return {name: role.pairs() for name, role in spec.auth.roles.items()}


def plan_roles(wanted: Mapping[str, frozenset[tuple[str, str]]], existing: Mapping[str, frozenset[tuple[str, str]]],
               retired: Iterable[str] = ()) -> list[RoleAction]:
    """Actions that give each wanted role exactly its permissions, and empty the `retired` ones
    (defined by an earlier spec, gone from this one) that still have any. Nothing to do -> []."""
    actions = []
    for name, perms in wanted.items():
        have = existing.get(name)
        if have is None:
            actions.append(RoleAction(name, True, tuple(sorted(perms))))
        elif have != perms:
            actions.append(RoleAction(name, False, tuple(sorted(perms - have)), tuple(sorted(have - perms))))
    for name in sorted(set(retired) - set(wanted)):
        if existing.get(name):
            actions.append(RoleAction(name, False, (), tuple(sorted(existing[name]))))
    return actions
