"""People and roles as a capability of the local runtime (spec `auth`).

With `auth.manager: fab` the api-server runs Airflow's FAB auth manager, whose users, roles
and permissions live in the metadata database (`airflow db migrate` creates FAB's tables: the
auth manager names its database manager). `write_configs` gives every wanted login a password
in the 0600 passwords file; `started`, once the api-server runs, makes Airflow's users match
the spec (`airscale.auth.sync`), roles of `auth.roles` included.

With `auth.ldap`, `write_configs` also writes `webserver_config.py` (FAB's LDAP settings and
airscale's security manager, `airscale.auth.webserver_config`); the api-server reads it at
start, so a changed directory setting or bind password restarts it at the next `up`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airscale.auth import passwords, users, webserver_config
from airscale.auth.sync import wanted_people
from airscale.errors import AirscaleError
from airscale.runtime.capability import Capability
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets, write_private
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
            passwords.write_local_logins(layout)
        ldap = spec.auth.ldap if users.fab_on(spec) else None
        target = layout.webserver_config
        if ldap is None:
            # Only a file airscale wrote: FAB's defaults (the database) without it.
            if target.exists() and target.read_text().startswith(webserver_config.HEADER):
                target.unlink()
            return
        require_python_ldap()
        settings = webserver_config.ldap_settings(
            ldap, webserver_config.read_bind_password(spec.resolve(ldap.bind_password_file)),
            passwords.local_logins_file(layout),
            spec.resolve(ldap.ca_cert_file) if ldap.ca_cert_file is not None else None)
        write_private(target, webserver_config.render(settings))

    def started(self, spec: Spec, layout: Layout, secrets: Secrets) -> None:
        if users.fab_on(spec):
            users.sync_spec(spec, layout, secrets)


def require_python_ldap() -> None:
    """FAB talks to the directory with python-ldap (airscale's `ldap` extra): without it every
    directory login would fail with a line in the api-server's log, so `up` refuses first."""
    try:
        import ldap  # noqa: F401
    except ImportError:
        raise AirscaleError("auth.ldap is set but python-ldap is not installed",
                            "run scripts/bootstrap, or apt-get install libldap2-dev libsasl2-dev gcc python3-dev "
                            "and pip install 'airscale[ldap]'") from None
