"""People and roles as a capability of the local runtime (spec `auth`).

With `auth.manager: fab` the api-server runs Airflow's FAB auth manager, whose users, roles
and permissions live in the metadata database (`airflow db migrate` creates FAB's tables: the
auth manager names its database manager). `write_configs` gives every wanted login a password
in the 0600 passwords file; `started`, once the api-server runs, makes Airflow's users match
the spec (`airscale.auth.sync`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airscale.auth import passwords, users
from airscale.auth.sync import wanted_people
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
USER_CACHE_SECONDS = 5


class Authentication(Capability):
    name = "auth"

    def airflow_settings(self, spec: Spec) -> dict[str, dict[str, Any]]:
        if not users.fab_on(spec):
            return {"core": {"auth_manager": SIMPLE_AUTH_MANAGER}}
        return {
            "core": {"auth_manager": FAB_AUTH_MANAGER},
            "fab": {
                # Nobody gets in without logging in (FAB's default too, stated so it cannot drift).
                "auth_role_public": "",
                # The api-server caches the user behind a token this many seconds (FAB's default
                # 30): a deactivated user's token kept working that long (measured). One database
                # read per user every 5 s is nothing.
                "cache_ttl": USER_CACHE_SECONDS,
            },
        }

    def write_configs(self, spec: Spec, layout: Layout, secrets: Secrets, comps: Sequence[Component]) -> None:
        if users.fab_on(spec):
            passwords.ensure(layout, [p.login for p in wanted_people(spec)])

    def started(self, spec: Spec, layout: Layout, secrets: Secrets) -> None:
        if users.fab_on(spec):
            users.sync_spec(spec, layout, secrets)
