"""Who may use a cluster: the auth manager, the people with their roles, roles the spec defines,
and an LDAP directory (`auth`).

Logins end up in Airflow's user table, in the audit log and in the passwords file, and are
passed to a helper process as data (never on a command line): they are kept to a shape that
is harmless everywhere and readable in a log, like Unix account names. Role names, permission
names, distinguished names and filters end up in Airflow's role tables and in the generated
`webserver_config.py` (written with `repr`, so no value can end a Python string), and are
bounded and free of control characters as every spec string is.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from airscale.spec.types import EmailAddress, SafePath, Text

# The login every cluster has: `airscale creds`, the benchmarks, drills and tests log in as it.
ADMIN_LOGIN = "admin"
_LOGIN = re.compile(r"[a-z][a-z0-9._-]{0,63}")


def _login(v: str) -> str:
    if not _LOGIN.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a login: lower-case letters, digits, '.', '_' and '-', starting with a "
            "letter, at most 64 characters (e.g. alice or ops-bot)"
        )
    return v


Login = Annotated[str, AfterValidator(_login)]


class Role(str, Enum):
    """FAB's built-in roles, from most to least allowed (Airflow's access-control docs)."""

    Admin = "Admin"
    Op = "Op"
    User = "User"
    Viewer = "Viewer"
    Public = "Public"


BUILTIN_ROLES = tuple(r.value for r in Role)
# FAB stores role names in a 64-character column; spaces would make them awkward on a command
# line (`airscale users add --role`), so the spec keeps them to one word.
_ROLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def _role_name(v: str) -> str:
    if not _ROLE_NAME.fullmatch(v):
        raise ValueError(f"{v!r} is not a role name: letters, digits, '_', '.', '-', starting with a letter, "
                         "at most 64 characters (e.g. finance_ops)")
    return v


RoleName = Annotated[str, AfterValidator(_role_name)]

# -- permissions of custom roles -------------------------------------------------------------
# FAB's actions and Airflow's resources (airflow/providers/fab/www/security/permissions.py of
# the FAB provider pinned in pyproject.toml; tests/unit/auth/test_ldap_and_roles.py checks this
# list against it). A name outside it would create a resource nothing checks: a role that
# silently grants nothing.
ACTIONS = ("can_read", "can_edit", "can_create", "can_delete", "menu_access")
RESOURCES = (
    "Permissions", "Admin", "Audit Logs", "All Audit Logs", "Backfills", "Browse", "Configurations",
    "Connections", "DAGs", "DAG Code", "DAG Dependencies", "DAG Runs", "DAG Versions", "DAG Warnings",
    "Cluster Activity", "Assets", "Asset Aliases", "Documentation", "Docs", "HITL Detail", "ImportError",
    "All Import Errors", "Jobs", "My Password", "My Profile", "Passwords", "Permission Views", "Plugins",
    "Pools", "Providers", "All Reparses", "View Menus", "Roles", "SLA Misses", "Task Instances", "Task Logs",
    "Task Reschedules", "Triggers", "Users", "User Stats Chart", "Variables", "Website", "XComs",
)
# Per-DAG resources: the prefix, and the actions Airflow checks on it.
DAG_PREFIXES = {"DAG:": ("can_read", "can_edit", "can_delete"),
                "DAG Run:": ("can_read", "can_create", "can_delete", "menu_access")}
# Airflow's DAG id rule (KEY_REGEX in airflow/utils/helpers.py), 250 characters.
_DAG_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")
WEBSITE_READ = ("can_read", "Website")


def _resource(v: str) -> str:
    if v in RESOURCES:
        return v
    for prefix in DAG_PREFIXES:
        if v.startswith(prefix):
            dag_id = v.removeprefix(prefix)
            if "*" in dag_id or "?" in dag_id:
                raise ValueError(f"{v!r}: Airflow matches DAG resources by exact id, with no wildcards; "
                                 f"name each DAG ({prefix}finance_daily, {prefix}finance_monthly) or grant "
                                 "the resource for all DAGs (DAGs)")
            if not _DAG_ID.fullmatch(dag_id):
                raise ValueError(f"{v!r}: {dag_id!r} is not a DAG id (letters, digits, '_', '.', '-')")
            return v
    close = [r for r in RESOURCES if r.lower() == v.lower()]
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"{v!r} is not an Airflow resource; {hint}use one of {', '.join(RESOURCES)}, or "
                     "DAG:<dag_id> / DAG Run:<dag_id> for one DAG")


class Permission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["can_read", "can_edit", "can_create", "can_delete", "menu_access"] = Field(
        description="FAB action: can_read, can_edit, can_create, can_delete or menu_access.")
    resource: Annotated[str, AfterValidator(_resource)] = Field(
        description="Airflow resource (DAGs, DAG Runs, Pools, Connections, ...) or one DAG: "
        "DAG:<dag_id>, DAG Run:<dag_id>.")

    @model_validator(mode="after")
    def _action_fits(self) -> Permission:
        for prefix, actions in DAG_PREFIXES.items():
            if self.resource.startswith(prefix) and self.action not in actions:
                raise ValueError(f"{self.resource!r} takes the actions {', '.join(actions)}, not {self.action!r}")
        return self

    def pair(self) -> tuple[str, str]:
        return (self.action, self.resource)


class RoleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    permissions: list[Permission] = Field(
        default_factory=list, max_length=1000,
        description="What the role may do, each an action on a resource. To trigger a DAG, Airflow "
        "asks for can_create on `DAG Runs` and can_edit on the DAG (`DAGs` for all, `DAG:<dag_id>` "
        "for one); reading asks for can_read on `DAGs` or `DAG:<dag_id>`.",
    )

    def pairs(self) -> frozenset[tuple[str, str]]:
        """The role's permissions as Airflow keeps them: FAB gives every role it did not define
        can_read on Website (the home page) at each api-server start, so it is part of the set."""
        return frozenset({p.pair() for p in self.permissions} | {WEBSITE_READ})


# -- LDAP ------------------------------------------------------------------------------------
_DN = re.compile(r"[A-Za-z][A-Za-z0-9-]*=[^=,]+(,\s*[A-Za-z][A-Za-z0-9-]*=[^=,]+)*")
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")


def _dn(v: str) -> str:
    if len(v) > 1024 or not _DN.fullmatch(v.strip()):
        raise ValueError(f"{v!r} is not a distinguished name; write e.g. cn=airflow-ops,ou=groups,dc=example,dc=com")
    return v.strip()


def _attribute(v: str) -> str:
    if not _ATTRIBUTE.fullmatch(v):
        raise ValueError(f"{v!r} is not an LDAP attribute name; write e.g. uid, sAMAccountName or memberOf")
    return v


def _filter(v: str) -> str:
    # FAB checks the same (AUTH_LDAP_SEARCH_FILTER must be a parenthesised filter): refused at
    # load, not at the first login.
    depth = 0
    for ch in v:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            break
    if not (v.startswith("(") and v.endswith(")")) or depth != 0 or len(v) > 1024:
        raise ValueError(f"{v!r} is not an LDAP filter: one parenthesised expression with balanced "
                         "parentheses, e.g. (objectClass=inetOrgPerson)")
    return v


def _ldap_url(v: str) -> str:
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"{v!r} is not a valid URL; write e.g. ldaps://ldap.example.com:636") from None
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"{v!r} must be an ldap:// or ldaps:// URL with a host, e.g. ldaps://ldap.example.com:636 "
                         "(ldapi:// and other schemes are not supported)")
    if parts.username or parts.password:
        raise ValueError("the server URL must not carry credentials; use bind_dn and bind_password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{v!r}: give only scheme, host and port (the search base is `search_base`)")
    return v


DistinguishedName = Annotated[str, AfterValidator(_dn)]
LdapAttribute = Annotated[str, AfterValidator(_attribute)]
LdapFilter = Annotated[str, AfterValidator(_filter)]
LdapUrl = Annotated[Text, AfterValidator(_ldap_url)]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LdapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server: LdapUrl = Field(description="The directory: ldaps://HOST[:636] (TLS from the start) or "
                            "ldap://HOST[:389] (with start_tls, or on loopback).")
    start_tls: bool = Field(False, description="Upgrade an ldap:// connection to TLS (StartTLS) before "
                            "binding; the connection is refused when the server cannot.")
    ca_cert_file: SafePath | None = Field(
        None, description="CA certificate (PEM) that signs the server's certificate, relative to this spec "
        "file; empty: the system's CAs. The server's certificate is always verified.")
    allow_plaintext: bool = Field(
        False, description="Allow ldap:// without StartTLS to a host that is not loopback: passwords then "
        "cross the network in clear. Only for a directory on a trusted private network.")
    bind_dn: DistinguishedName = Field(
        description="The account airscale's api-server binds as to search for people, e.g. "
        "cn=airflow,ou=services,dc=example,dc=com.")
    bind_password_file: SafePath = Field(
        description="File (relative to this spec file) holding bind_dn's password on its first line; "
        "it must be private to its owner (chmod 600). The password is never in the spec.")
    search_base: DistinguishedName = Field(description="Where people are searched, e.g. ou=people,dc=example,dc=com.")
    uid_attribute: LdapAttribute = Field("uid", description="Attribute holding the login (uid; sAMAccountName "
                                         "on Active Directory).")
    search_filter: LdapFilter | None = Field(
        None, description="Extra filter people must match, e.g. (objectClass=inetOrgPerson).")
    group_attribute: LdapAttribute = Field(
        "memberOf", description="Attribute of a person listing the DNs of their groups (memberOf: "
        "OpenLDAP's memberof overlay, Active Directory).")
    group_roles: dict[DistinguishedName, RoleName] = Field(
        default_factory=dict, max_length=500,
        description="Group DN -> Airflow role (built-in or from auth.roles). A person in several "
        "mapped groups gets every role they map to; roles are set anew at each login.")
    default_role: RoleName | None = Field(
        None, description="Role of a person of the directory in no mapped group; empty: such a person "
        "is refused.")

    @model_validator(mode="after")
    def _tls(self) -> LdapSpec:
        parts = urlsplit(self.server)
        if parts.scheme == "ldaps" and self.start_tls:
            raise ValueError("server is ldaps:// (TLS from the start) and start_tls is on: use one, "
                             "ldaps://HOST:636 or ldap://HOST:389 with start_tls: true")
        plain = parts.scheme == "ldap" and not self.start_tls
        if plain and not self.allow_plaintext and not is_loopback(parts.hostname or ""):
            raise ValueError(f"server {self.server!r} would carry the bind password and every person's "
                             "password in clear: use ldaps://, or start_tls: true, or (on a trusted "
                             "private network only) allow_plaintext: true")
        if not self.group_roles and self.default_role is None:
            raise ValueError("with neither group_roles nor default_role nobody from the directory could log "
                             "in: map groups to roles (group_roles) or set default_role")
        if self.ca_cert_file is not None and not (parts.scheme == "ldaps" or self.start_tls):
            raise ValueError("ca_cert_file is set but the connection has no TLS: use ldaps:// or start_tls: true")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.start_tls or urlsplit(self.server).scheme == "ldaps"


class UserSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: RoleName = Field(
        description="Airflow role: Admin (everything), Op (also connections, pools, variables), "
        "User (trigger, clear and edit DAG runs), Viewer (read only), Public (nothing), or one "
        "of auth.roles.",
    )
    email: EmailAddress | None = Field(
        None, description="E-mail address (unique per cluster); empty: LOGIN@airscale.invalid."
    )
    name: Annotated[Text, Field(max_length=128)] | None = Field(
        None, description="Full name shown in the UI; empty: the login."
    )


def unknown_role(name: str, custom: dict[str, RoleSpec] | set[str]) -> str | None:
    """Why `name` is not a role a user or group can have (None: it is one)."""
    if name in BUILTIN_ROLES or name in custom:
        return None
    builtin = {r.lower(): r for r in BUILTIN_ROLES}
    if name.lower() in builtin:
        return f"{name!r} is not a role; roles are case-sensitive: write {builtin[name.lower()]!r}"
    defined = ", ".join(sorted(custom)) or "none"
    return (f"{name!r} is not a role: built-in roles are {', '.join(BUILTIN_ROLES)}; auth.roles defines "
            f"{defined}")


class AuthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manager: Literal["fab", "simple"] = Field(
        "fab",
        description="'fab': Airflow's production auth manager (the FAB provider), users with "
        "roles from `users`. 'simple': Airflow's SimpleAuthManager with the one `admin` login, "
        "for development only (Airflow's docs call it unfit for production).",
    )
    roles: dict[RoleName, RoleSpec] = Field(
        default_factory=dict,
        max_length=200,
        description="Roles besides the built-in ones, each with its permissions; `up` creates them and "
        "sets their permissions to exactly these. Usable in `users` and in `ldap.group_roles`.",
    )
    users: dict[Login, UserSpec] = Field(
        default_factory=dict,
        max_length=1000,
        description="People who log in, by login, each with a role; passwords are generated into "
        "the cluster's data folder (0600) and shown once (`airscale creds --user LOGIN`). The "
        "login `admin` always exists with role Admin. A login removed here is deactivated at "
        "the next `up`, not deleted, so the audit log keeps its name.",
    )
    ldap: LdapSpec | None = Field(
        None,
        description="People from an LDAP directory (OpenLDAP, Active Directory): they log in with their "
        "directory password and get roles from their groups. `admin` and `users` keep logging in "
        "with airscale's passwords.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AuthSpec:
        if self.manager == "simple" and (self.users or self.roles or self.ldap):
            raise ValueError("users, roles and ldap need manager: fab (SimpleAuthManager knows only `admin`); "
                             "set auth.manager: fab or remove them")
        builtin = {r.lower(): r for r in BUILTIN_ROLES}
        for name in self.roles:
            if name.lower() in builtin:
                raise ValueError(f"roles: {name!r} is the name of the built-in role {builtin[name.lower()]!r}, "
                                 "whose permissions Airflow sets itself; give your role another name")
        for login, user in self.users.items():
            if problem := unknown_role(user.role, self.roles):
                raise ValueError(f"users.{login}.role: {problem}")
        if self.ldap is not None:
            for dn, role in self.ldap.group_roles.items():
                if problem := unknown_role(role, self.roles):
                    raise ValueError(f"ldap.group_roles[{dn!r}]: {problem}")
            if self.ldap.default_role is not None and (problem := unknown_role(self.ldap.default_role, self.roles)):
                raise ValueError(f"ldap.default_role: {problem}")
        admin = self.users.get(ADMIN_LOGIN)
        if admin is not None and admin.role != Role.Admin.value:
            raise ValueError(f"the login {ADMIN_LOGIN!r} is the cluster's own administrator and keeps role "
                             "Admin; give this person another login")
        seen: dict[str, str] = {}
        for login, user in self.users.items():
            email = email_of(login, user).lower()
            if email in seen:
                raise ValueError(f"users {seen[email]!r} and {login!r} have the same e-mail {email!r}; "
                                 "Airflow needs one e-mail per user")
            seen[email] = login
        return self


def email_of(login: str, user: UserSpec) -> str:
    # .invalid is reserved (RFC 2606): a default address can never reach anyone.
    return user.email or f"{login}@airscale.invalid"


def private_file_problem(path: Path) -> str | None:
    """Why `path` cannot hold a password (None: it can): it must be a regular file (a symlink
    is judged by its target, as a mounted Kubernetes Secret is one), readable by us and closed
    to group and others (as ssh demands of a key)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as e:
        return f"{path} cannot be read ({e.__class__.__name__})"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_mode & 0o077:
        return f"{path} is readable or writable by others (mode {stat.S_IMODE(st.st_mode):o}); run chmod 600 {path}"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this account"
    try:
        first = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return f"{path} cannot be read ({e.__class__.__name__})"
    if not first or not first[0].strip():
        return f"{path} is empty; write the bind password on its first line"
    return None
