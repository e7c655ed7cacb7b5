"""The user-sync decision: the spec's people (plus admin) against Airflow's users."""

from __future__ import annotations

import pytest

from airscale.auth.sync import Kind, Person, plan, wanted_people
from airscale.spec import Spec


def p(login, role="User", email=None, first=None, last="", active=True):
    return Person(login, frozenset({role}) if isinstance(role, str) else frozenset(role),
                  email or f"{login}@airscale.invalid", first or login, last, active)


ADMIN = p("admin", "Admin", first="Admin")


@pytest.mark.parametrize("wanted, existing, expected", [
    pytest.param([ADMIN], [], [(Kind.create, "admin", ())], id="empty-cluster-creates-admin"),
    pytest.param([ADMIN, p("alice")], [ADMIN, p("alice")], [], id="in-step-nothing-to-do"),
    pytest.param([ADMIN, p("alice", "Op")], [ADMIN, p("alice", "Viewer")], [(Kind.update, "alice", ("role",))],
                 id="role-changed"),
    pytest.param([ADMIN], [ADMIN, p("alice")], [(Kind.deactivate, "alice", ())], id="removed-from-spec-deactivated"),
    pytest.param([ADMIN], [ADMIN, p("alice", active=False)], [], id="already-inactive-left-alone"),
    pytest.param([ADMIN, p("alice")], [ADMIN, p("alice", active=False)], [(Kind.update, "alice", ("active",))],
                 id="named-again-reactivated"),
    pytest.param([ADMIN, p("alice", email="a@example.com", first="Alice", last="L")], [ADMIN, p("alice")],
                 [(Kind.update, "alice", ("email", "name"))], id="email-and-name"),
    pytest.param([ADMIN, p("alice", email="A@Example.com")], [ADMIN, p("alice", email="a@example.com")], [],
                 id="email-case-is-not-a-change"),
    pytest.param([ADMIN, p("alice")], [ADMIN, p("Alice", first="alice")], [], id="login-case-matches-fabs-lookup"),
    pytest.param([ADMIN, p("alice")], [ADMIN, p("alice", ["User", "Op"])], [(Kind.update, "alice", ("role",))],
                 id="extra-role-granted-in-ui-taken-back"),
    pytest.param([ADMIN, p("bob"), p("alice")], [ADMIN, p("zed"), p("carl")],
                 [(Kind.create, "bob", ()), (Kind.create, "alice", ()), (Kind.deactivate, "carl", ()),
                  (Kind.deactivate, "zed", ())], id="order-wanted-then-deactivations-by-login"),
])
def test_plan(wanted, existing, expected):
    assert [(a.kind, a.login, a.changes) for a in plan(wanted, existing)] == expected


def test_a_single_change_leaves_other_users_alone():
    # `airscale users add bob`: only bob is looked at
    actions = plan([p("bob")], [ADMIN, p("alice")], deactivate_others=False)
    assert [(a.kind, a.login) for a in actions] == [(Kind.create, "bob")]


def test_plan_is_idempotent():
    wanted = [ADMIN, p("alice", "Op"), p("victor", "Viewer")]
    existing = [ADMIN, p("alice"), p("old")]
    after = {x.login: x for x in existing}
    for a in plan(wanted, existing):
        after[a.login] = a.target if a.target else Person(**{**after[a.login].__dict__, "active": False})
    assert plan(wanted, list(after.values())) == []


def test_wanted_people_has_admin_and_the_spec_users():
    spec = Spec.model_validate({"auth": {"users": {
        "alice": {"role": "Op", "name": "Alice van Dijk", "email": "alice@example.com"},
        "victor": {"role": "Viewer"}}}})
    people = {x.login: x for x in wanted_people(spec)}
    assert people["admin"].roles == {"Admin"}
    assert people["alice"] == Person("alice", frozenset({"Op"}), "alice@example.com", "Alice", "van Dijk")
    assert people["victor"].email == "victor@airscale.invalid" and people["victor"].first_name == "victor"
