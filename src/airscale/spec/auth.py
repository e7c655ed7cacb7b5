"""Who may use a cluster: the auth manager and the people with their roles (`auth`).

Logins end up in Airflow's user table, in the audit log and in the passwords file, and are
passed to a helper process as data (never on a command line): they are kept to a shape that
is harmless everywhere and readable in a log, like Unix account names.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from airscale.spec.types import EmailAddress, Text

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


class UserSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role = Field(
        description="Airflow role: Admin (everything), Op (also connections, pools, variables), "
        "User (trigger, clear and edit DAG runs), Viewer (read only) or Public (nothing).",
    )
    email: EmailAddress | None = Field(
        None, description="E-mail address (unique per cluster); empty: LOGIN@airscale.invalid."
    )
    name: Annotated[Text, Field(max_length=128)] | None = Field(
        None, description="Full name shown in the UI; empty: the login."
    )


class AuthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manager: Literal["fab", "simple"] = Field(
        "fab",
        description="'fab': Airflow's production auth manager (the FAB provider), users with "
        "roles from `users`. 'simple': Airflow's SimpleAuthManager with the one `admin` login, "
        "for development only (Airflow's docs call it unfit for production).",
    )
    users: dict[Login, UserSpec] = Field(
        default_factory=dict,
        max_length=1000,
        description="People who log in, by login, each with a role; passwords are generated into "
        "the cluster's data folder (0600) and shown once (`airscale creds --user LOGIN`). The "
        "login `admin` always exists with role Admin. A login removed here is deactivated at "
        "the next `up`, not deleted, so the audit log keeps its name.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AuthSpec:
        if self.manager == "simple" and self.users:
            raise ValueError("users need manager: fab (SimpleAuthManager knows only `admin`); "
                             "set auth.manager: fab or remove auth.users")
        admin = self.users.get(ADMIN_LOGIN)
        if admin is not None and admin.role is not Role.Admin:
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
