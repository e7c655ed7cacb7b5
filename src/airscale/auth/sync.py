"""What to change in Airflow's user table so that it matches the spec (pure).

`plan(wanted, existing)` compares the people of the spec (plus `admin`) with the users Airflow
has and returns one action per login that differs: create, update (role, e-mail, name, or an
inactive user the spec names again) or deactivate. Users are deactivated rather than deleted:
Airflow's audit log stores the login as text, and a deleted user could be recreated by
someone else under the same name, who would then inherit the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    return Person(login, frozenset({user.role.value}), email_of(login, user), first, last)


def wanted_people(spec: Spec) -> list[Person]:
    """Everyone who should be able to log in: `admin` (role Admin) and the spec's users."""
    users = {ADMIN_LOGIN: UserSpec(role=Role.Admin, name="Admin")} | dict(spec.auth.users)
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


def plan(wanted: Iterable[Person], existing: Iterable[Person], deactivate_others: bool = True) -> list[Action]:
    """Actions that make `existing` match `wanted`, in a stable order (wanted first, by the
    order given, then deactivations by login). Nothing to do -> no actions.

    `deactivate_others`: `up` passes True (the spec is the whole truth); `airscale users add`
    passes False (it changes one person).
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
            if login not in names and have[login].active:
                actions.append(Action(Kind.deactivate, have[login].login))
    return actions
