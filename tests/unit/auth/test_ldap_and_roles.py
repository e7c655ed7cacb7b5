"""The spec's LDAP directory (`auth.ldap`) and custom roles (`auth.roles`): validation, the
FAB settings written for the api-server, and the role-sync decision."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest
import yaml

from airscale.auth import passwords, webserver_config
from airscale.auth.capability import Authentication
from airscale.auth.cli import _user_spec
from airscale.auth.sync import Kind, Person, RoleAction, plan, plan_roles, wanted_roles
from airscale.errors import AirscaleError
from airscale.runtime.layout import Layout
from airscale.spec import Spec
from airscale.spec.auth import RESOURCES, WEBSITE_READ
from airscale.spec.load import parse_spec

GROUPS = "ou=groups,dc=example,dc=com"
LDAP = {"server": "ldaps://ldap.example.com", "bind_dn": "cn=airflow,ou=services,dc=example,dc=com",
        "bind_password_file": "bind.pw", "search_base": "ou=people,dc=example,dc=com",
        "group_roles": {f"cn=ops,{GROUPS}": "Op"}}


def spec_text(auth: dict) -> str:
    return yaml.safe_dump({"cluster": {"name": "t"}, "auth": auth})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    pw = tmp_path / "bind.pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    return tmp_path


def load(folder: Path, auth: dict) -> Spec:
    path = folder / "airscale.yaml"
    path.write_text(spec_text(auth))
    return parse_spec(path.read_text(), path)


def ldap(**changes) -> dict:
    out = {**LDAP, **changes}
    return {k: v for k, v in out.items() if v is not None}


FINANCE = {"permissions": [{"action": "can_read", "resource": "DAGs"},
                           {"action": "can_create", "resource": "DAG Runs"},
                           {"action": "can_edit", "resource": "DAG:finance_daily"}]}


@pytest.mark.parametrize("auth, expected", [
    # -- the server URL and TLS
    pytest.param({"ldap": ldap(server="http://ldap.example.com")}, ["auth.ldap.server", "ldap:// or ldaps://"],
                 id="scheme-http"),
    pytest.param({"ldap": ldap(server="ldapi:///var/run/slapd.sock")}, ["auth.ldap.server", "ldapi://"],
                 id="scheme-ldapi"),
    pytest.param({"ldap": ldap(server="ldaps://")}, ["auth.ldap.server", "with a host"], id="no-host"),
    pytest.param({"ldap": ldap(server="ldaps://ldap.example.com:x")}, ["auth.ldap.server", "not a valid URL"],
                 id="port-not-a-number"),
    pytest.param({"ldap": ldap(server="ldaps://cn=x:pw@ldap.example.com")}, ["auth.ldap.server", "credentials"],
                 id="credentials-in-url"),
    pytest.param({"ldap": ldap(server="ldaps://ldap.example.com/dc=example")}, ["auth.ldap.server", "search_base"],
                 id="path-in-url"),
    pytest.param({"ldap": ldap(server="ldaps://ldap.example.com\nX=1")}, ["auth.ldap.server", "control character"],
                 id="newline-in-url"),
    pytest.param({"ldap": ldap(server="ldaps://ldap.example.com", start_tls=True)}, ["auth.ldap", "use one"],
                 id="ldaps-and-starttls"),
    pytest.param({"ldap": ldap(server="ldap://ldap.example.com")}, ["auth.ldap", "in clear", "start_tls"],
                 id="plaintext-to-a-remote-host"),
    pytest.param({"ldap": ldap(server="ldap://ldap.example.com", ca_cert_file="ca.pem", allow_plaintext=True)},
                 ["auth.ldap", "ca_cert_file", "no TLS"], id="ca-without-tls"),
    # -- names of the directory
    pytest.param({"ldap": ldap(bind_dn="airflow")}, ["auth.ldap.bind_dn", "distinguished name"], id="bind-dn-not-a-dn"),
    pytest.param({"ldap": ldap(search_base="")}, ["auth.ldap.search_base"], id="search-base-empty"),
    pytest.param({"ldap": ldap(uid_attribute="uid)(x=*")}, ["auth.ldap.uid_attribute", "attribute"],
                 id="uid-attribute-injection"),
    pytest.param({"ldap": ldap(search_filter="objectClass=person")}, ["auth.ldap.search_filter", "parenthesised"],
                 id="filter-without-parentheses"),
    pytest.param({"ldap": ldap(search_filter="(objectClass=person))(|(uid=*)")}, ["auth.ldap.search_filter"],
                 id="filter-unbalanced"),
    pytest.param({"ldap": ldap(group_roles={"ops": "Op"})}, ["group_roles", "distinguished name"], id="group-not-a-dn"),
    # -- roles of the directory
    pytest.param({"ldap": ldap(group_roles={f"cn=ops,{GROUPS}": "Operator"})},
                 ["ldap.group_roles", "'Operator' is not a role", "Admin, Op"], id="group-role-unknown"),
    pytest.param({"ldap": ldap(default_role="viewer")}, ["ldap.default_role", "case-sensitive", "'Viewer'"],
                 id="default-role-wrong-case"),
    pytest.param({"ldap": ldap(group_roles={})}, ["auth.ldap", "nobody from the directory"], id="nobody-could-log-in"),
    pytest.param({"manager": "simple", "ldap": ldap()}, ["auth", "manager: fab"], id="ldap-needs-fab"),
    pytest.param({"ldap": ldap(bind_password="hunter2")}, ["auth.ldap.bind_password", "unknown field"],
                 id="password-in-the-spec"),
    # -- custom roles
    pytest.param({"roles": {"admin": FINANCE}}, ["auth", "built-in role 'Admin'"], id="role-clashes-admin"),
    pytest.param({"roles": {"Viewer": FINANCE}}, ["auth", "built-in role 'Viewer'"], id="role-clashes-viewer"),
    pytest.param({"roles": {"finance ops": FINANCE}}, ["auth.roles", "not a role name"], id="role-name-space"),
    pytest.param({"roles": {"finance": {"permissions": [{"action": "can_trigger", "resource": "DAGs"}]}}},
                 ["auth.roles.finance.permissions.0.action"], id="unknown-action"),
    pytest.param({"roles": {"finance": {"permissions": [{"action": "can_read", "resource": "Dags"}]}}},
                 ["auth.roles.finance.permissions.0.resource", "did you mean 'DAGs'"], id="resource-wrong-case"),
    pytest.param({"roles": {"finance": {"permissions": [{"action": "can_read", "resource": "Secrets"}]}}},
                 ["permissions.0.resource", "not an Airflow resource"], id="unknown-resource"),
    pytest.param({"roles": {"finance": {"permissions": [{"action": "can_edit", "resource": "DAG:finance_*"}]}}},
                 ["permissions.0.resource", "no wildcards", "DAG:finance_daily"], id="wildcard-dag"),
    pytest.param({"roles": {"finance": {"permissions": [{"action": "can_edit", "resource": "DAG:fin ance"}]}}},
                 ["permissions.0.resource", "not a DAG id"], id="bad-dag-id"),
    pytest.param({"roles": {"finance": {"permissions": [{"action": "can_create", "resource": "DAG:finance_daily"}]}}},
                 ["permissions.0", "can_read, can_edit, can_delete"], id="action-not-for-a-dag"),
    pytest.param({"roles": {"finance": FINANCE}, "users": {"fred": {"role": "finanse"}}},
                 ["users.fred.role", "'finanse' is not a role", "defines finance"], id="user-role-misspelt"),
    pytest.param({"manager": "simple", "roles": {"finance": FINANCE}}, ["auth", "manager: fab"], id="roles-need-fab"),
])
def test_bad_auth_is_refused_naming_the_field(folder, auth, expected):
    with pytest.raises(AirscaleError) as e:
        load(folder, auth)
    text = e.value.problem
    for want in expected:
        assert want in text, text


def _mode(mode: int):
    def make(path: Path) -> None:
        path.chmod(mode)
    return make


def _symlink_to_shared(path: Path) -> None:
    target = path.with_name("real.pw")
    path.rename(target)
    target.chmod(0o644)
    path.symlink_to(target)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("spoil, expected", [
    pytest.param(lambda p: p.unlink(), "does not exist", id="missing"),
    pytest.param(_mode(0o644), "chmod 600", id="world-readable"),
    pytest.param(_mode(0o640), "chmod 600", id="group-readable"),
    pytest.param(_mode(0o602), "chmod 600", id="world-writable"),
    pytest.param(_symlink_to_shared, "chmod 600", id="symlink-to-a-readable-file"),
    pytest.param(_directory, "not a regular file", id="a-folder"),
    pytest.param(lambda p: p.write_text("\n"), "empty", id="empty"),
])
def test_bind_password_file_must_be_private(folder, spoil, expected):
    spoil(folder / "bind.pw")
    with pytest.raises(AirscaleError) as e:
        load(folder, {"ldap": ldap()})
    assert "auth.ldap.bind_password_file" in e.value.problem and expected in e.value.problem, e.value.problem
    assert "s3cret" not in e.value.problem + (e.value.fix or "")


def test_missing_ca_file_is_refused(folder):
    with pytest.raises(AirscaleError) as e:
        load(folder, {"ldap": ldap(ca_cert_file="ca.pem")})
    assert "auth.ldap.ca_cert_file" in e.value.problem and "does not exist" in e.value.problem


@pytest.mark.parametrize("auth", [
    pytest.param({"ldap": ldap()}, id="ldaps"),
    pytest.param({"ldap": ldap(server="ldap://ldap.example.com:389", start_tls=True)}, id="starttls"),
    pytest.param({"ldap": ldap(server="ldap://127.0.0.1:30000")}, id="plaintext-on-loopback"),
    pytest.param({"ldap": ldap(server="ldap://10.0.0.5", allow_plaintext=True)}, id="plaintext-allowed"),
    pytest.param({"ldap": ldap(group_roles={}, default_role="Viewer")}, id="everyone-a-viewer"),
    pytest.param({"roles": {"finance": FINANCE}, "users": {"fred": {"role": "finance"}},
                  "ldap": ldap(group_roles={f"cn=fin,{GROUPS}": "finance"})}, id="custom-role-for-users-and-groups"),
    pytest.param({"roles": {"reader": {"permissions": [{"action": "can_read", "resource": "DAG Run:x.y-z"}]}}},
                 id="dag-run-of-one-dag"),
])
def test_good_auth_loads(folder, auth):
    load(folder, auth)


# -- what the api-server is given ------------------------------------------------------------
def settings_of(folder: Path, auth: dict) -> dict:
    spec = load(folder, auth)
    ca = spec.resolve(spec.auth.ldap.ca_cert_file) if spec.auth.ldap.ca_cert_file else None
    return webserver_config.ldap_settings(spec.auth.ldap, "s3cret", folder / "local-logins.json", ca)


@pytest.mark.parametrize("auth, expected, absent", [
    pytest.param({"ldap": ldap()}, {"AUTH_LDAP_SERVER": "ldaps://ldap.example.com", "AUTH_LDAP_USE_TLS": False,
                                    "AUTH_LDAP_TLS_DEMAND": True, "AUTH_LDAP_ALLOW_SELF_SIGNED": False,
                                    "AUTH_LDAP_BIND_PASSWORD": "s3cret", "AUTH_LDAP_UID_FIELD": "uid",
                                    "AUTH_LDAP_GROUP_FIELD": "memberOf", "AUTH_ROLES_SYNC_AT_LOGIN": True,
                                    "AUTH_USER_REGISTRATION": True, "AIRSCALE_DEFAULT_ROLE": None,
                                    "AUTH_ROLES_MAPPING": {f"cn=ops,{GROUPS}": ["Op"]}},
                 ["AUTH_LDAP_TLS_CACERTFILE"], id="ldaps-verifies-the-certificate"),
    pytest.param({"ldap": ldap(server="ldap://ldap.example.com", start_tls=True)},
                 {"AUTH_LDAP_USE_TLS": True, "AUTH_LDAP_TLS_DEMAND": True}, [], id="starttls"),
    pytest.param({"ldap": ldap(server="ldap://127.0.0.1:30000")}, {"AUTH_LDAP_USE_TLS": False},
                 ["AUTH_LDAP_TLS_DEMAND"], id="loopback-plaintext"),
    pytest.param({"ldap": ldap(default_role="Viewer", uid_attribute="sAMAccountName",
                               search_filter="(objectClass=user)")},
                 {"AIRSCALE_DEFAULT_ROLE": "Viewer", "AUTH_USER_REGISTRATION_ROLE": "Viewer",
                  "AUTH_LDAP_UID_FIELD": "sAMAccountName", "AUTH_LDAP_SEARCH_FILTER": "(objectClass=user)"},
                 [], id="active-directory-with-default-role"),
])
def test_ldap_settings(folder, auth, expected, absent):
    got = settings_of(folder, auth)
    assert {k: got.get(k) for k in expected} == expected
    assert not set(absent) & set(got)


def test_ca_file_is_given_as_an_absolute_path(folder):
    (folder / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    got = settings_of(folder, {"ldap": ldap(ca_cert_file="ca.pem")})
    assert got["AUTH_LDAP_TLS_CACERTFILE"] == str(folder / "ca.pem")


def test_rendered_file_is_plain_assignments_of_the_values(folder):
    # Quotes and backslashes of spec text cannot end a string of the generated Python.
    hostile_dn = "cn=o'brien\\\" + __import__('os'),ou=groups,dc=example,dc=com"
    settings = settings_of(folder, {"ldap": ldap(group_roles={hostile_dn: "Op"})})
    text = webserver_config.render(settings)
    assert text.startswith(webserver_config.HEADER)
    tree = ast.parse(text)
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            name = node.targets[0].id
            if name in ("AUTH_TYPE", "SECURITY_MANAGER_CLASS"):
                assert isinstance(node.value, ast.Name)
                continue
            values[name] = ast.literal_eval(node.value)  # only literals: no call, no name
        else:
            assert isinstance(node, ast.ImportFrom), ast.dump(node)
    assert values == settings
    assert list(values["AUTH_ROLES_MAPPING"]) == [hostile_dn]


@pytest.mark.parametrize("a, b, same", [
    ("cn=Ops, ou=Groups,dc=example,dc=com", "cn=ops,ou=groups,dc=example,dc=com", True),
    ("cn=ops,ou=groups,dc=example,dc=com", "cn=ops2,ou=groups,dc=example,dc=com", False),
])
def test_dns_compare_as_dns(a, b, same):
    assert (webserver_config.normalize_dn(a) == webserver_config.normalize_dn(b)) is same


def test_local_logins_unreadable_means_none(tmp_path):
    assert webserver_config.local_logins(str(tmp_path / "missing.json")) == frozenset()
    (tmp_path / "bad.json").write_text("{")
    assert webserver_config.local_logins(str(tmp_path / "bad.json")) == frozenset()
    (tmp_path / "ok.json").write_text('["admin", "lena"]')
    assert webserver_config.local_logins(str(tmp_path / "ok.json")) == {"admin", "lena"}


def test_write_configs_writes_a_private_file_and_removes_only_its_own(folder):
    lay = Layout(folder / "data")
    lay.make_dirs()
    cap = Authentication()
    spec = load(folder, {"users": {"lena": {"role": "Viewer"}}, "ldap": ldap()})
    cap.write_configs(spec, lay, None, [])  # it reads no cluster secret
    text = lay.webserver_config.read_text()
    assert stat.S_IMODE(lay.webserver_config.stat().st_mode) == 0o600 and "'s3cret'" in text
    assert sorted(webserver_config.local_logins(str(passwords.local_logins_file(lay)))) == ["admin", "lena"]
    assert stat.S_IMODE(os.stat(passwords.local_logins_file(lay)).st_mode) == 0o600

    without = load(folder, {"users": {"lena": {"role": "Viewer"}}})
    cap.write_configs(without, lay, None, [])
    assert not lay.webserver_config.exists()
    lay.webserver_config.write_text("# the operator's own settings\n")
    cap.write_configs(without, lay, None, [])
    assert lay.webserver_config.read_text() == "# the operator's own settings\n"


def test_resources_are_the_providers():
    from airflow.providers.fab.www.security import permissions

    provider = {v for k, v in vars(permissions).items() if k.startswith("RESOURCE_") and isinstance(v, str)
                and k != "RESOURCE_DAG_PREFIX"}
    assert provider == set(RESOURCES)


# -- the role-sync decision ------------------------------------------------------------------
R = frozenset({("can_read", "DAGs"), WEBSITE_READ})


@pytest.mark.parametrize("wanted, existing, retired, expected", [
    pytest.param({"fin": R}, {}, [], [RoleAction("fin", True, tuple(sorted(R)))], id="missing-created"),
    pytest.param({"fin": R}, {"fin": R}, [], [], id="in-step"),
    pytest.param({"fin": R | {("can_edit", "DAG:a")}}, {"fin": R}, [],
                 [RoleAction("fin", False, (("can_edit", "DAG:a"),), ())], id="permission-added"),
    pytest.param({"fin": R}, {"fin": R | {("can_delete", "DAGs")}}, [],
                 [RoleAction("fin", False, (), (("can_delete", "DAGs"),))], id="granted-in-ui-taken-back"),
    pytest.param({}, {"old": R}, ["old"], [RoleAction("old", False, (), tuple(sorted(R)))], id="retired-emptied"),
    pytest.param({}, {"old": frozenset()}, ["old"], [], id="retired-already-empty"),
    pytest.param({}, {}, ["gone"], [], id="retired-and-deleted-in-ui"),
])
def test_plan_roles(wanted, existing, retired, expected):
    assert plan_roles(wanted, existing, retired) == expected


def test_wanted_roles_include_the_home_page(folder):
    spec = load(folder, {"roles": {"finance": FINANCE}})
    assert wanted_roles(spec)["finance"] == {("can_read", "DAGs"), ("can_create", "DAG Runs"),
                                             ("can_edit", "DAG:finance_daily"), WEBSITE_READ}


def p(login, role="Viewer"):
    return Person(login, frozenset({role}), f"{login}@airscale.invalid", login)


@pytest.mark.parametrize("managed, expected", [
    pytest.param(None, [(Kind.deactivate, "dora"), (Kind.deactivate, "tmp")], id="no-directory-any-login"),
    pytest.param(["admin", "tmp"], [(Kind.deactivate, "tmp")], id="directory-people-left-alone"),
])
def test_up_deactivates_only_managed_logins(managed, expected):
    actions = plan([p("admin", "Admin")], [p("admin", "Admin"), p("dora"), p("tmp")], True, managed)
    assert [(a.kind, a.login) for a in actions] == expected


@pytest.mark.parametrize("role, custom, expected", [
    pytest.param("viewer", (), "Viewer", id="builtin-any-case"),
    pytest.param("finance", ("finance",), "finance", id="custom"),
])
def test_cli_role(role, custom, expected):
    assert _user_spec(role, None, None, custom).role == expected


@pytest.mark.parametrize("role, custom, expected", [
    pytest.param("Finance", ("finance",), "'Finance' is not a role", id="custom-is-case-sensitive"),
    pytest.param("root", (), "'root' is not a role", id="unknown"),
])
def test_cli_role_refused(role, custom, expected):
    with pytest.raises(AirscaleError) as e:
        _user_spec(role, None, None, custom)
    assert expected in e.value.problem and "Admin, Op, User, Viewer, Public" in (e.value.fix or "")


@pytest.mark.parametrize("auth, note", [
    pytest.param({}, None, id="nothing-to-say"),
    pytest.param({"roles": {"finance": FINANCE}}, "The spec's auth.roles is not rendered", id="roles"),
    pytest.param({"ldap": ldap()}, "The spec's auth.ldap is not rendered", id="ldap"),
    pytest.param({"roles": {"finance": FINANCE}, "ldap": ldap()}, "auth.ldap and auth.roles are not rendered",
                 id="both"),
])
def test_k8s_readme_says_what_is_not_rendered(folder, auth, note):
    from airscale.deploy.render import README, bundle

    text = bundle(load(folder, auth)).docs[README]
    if note is None:
        assert "not rendered" not in text
    else:
        assert note in text and "webserverConfig" in text


@pytest.mark.parametrize("username, expected", [
    pytest.param("admin", "database", id="local"),
    pytest.param("ADMIN", "database", id="local-any-case"),
    pytest.param("Lena", "database", id="local-person-any-case"),
    pytest.param("olaf", "directory", id="not-local"),
    pytest.param("Olaf.Smith", "directory", id="directory-login-as-written"),
    pytest.param(" admin", None, id="leading-blank"),
    pytest.param("admin ", None, id="trailing-blank"),
    pytest.param("ad\nmin", None, id="control-character"),
    pytest.param("", None, id="empty"),
    pytest.param(None, None, id="none"),
])
def test_each_login_has_one_authority(username, expected):
    assert webserver_config.authority(username, frozenset({"admin", "lena"})) == expected
