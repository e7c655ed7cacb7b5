"""FAB's security manager for a cluster with an LDAP directory (`auth.ldap`): who is checked where.

In LDAP mode (AUTH_TYPE = AUTH_LDAP) FAB checks every login of its login page against the
directory, and the FAB provider's `POST /auth/token` asks the directory first and the
database after. Left like that, three things go wrong on an airscale cluster:

- airscale's own accounts (`admin`, which the CLI uses for triggers, pools and user sync, and
  the spec's `auth.users`) are not in the directory: they could not log in to the UI;
- a directory entry with the same login as a local account (`uid=admin`) would log in as that
  account with the directory's password, and the role sync at login would overwrite its roles;
- a directory person given a database password (`users reset-password`) could log in with it,
  bypassing the directory (and a password change or lock there).

So each login has exactly one authority (`webserver_config.authority`). The logins airscale
gave a password (its passwords file, published without the passwords in `local-logins.json`
next to it), in any letter case, are checked against the database only, never sent to the
directory; every other login is checked against the directory only; a login with blanks
around it is refused (LDAP would ignore them and match another person's entry). A directory person in no mapped group, when the spec gives no `default_role`,
is treated as not found: no row is created and the login is refused.

`webserver_config.py` (written by `airscale.auth.webserver_config`) names this class as
SECURITY_MANAGER_CLASS and sets AIRSCALE_LOCAL_LOGINS_FILE and AIRSCALE_DEFAULT_ROLE.
This module imports Airflow's FAB provider: only the api-server and the user helper load it.
"""

from __future__ import annotations

import logging

from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride
from flask import current_app

from airscale.auth.webserver_config import DATABASE, authority, local_logins, normalize_dn

log = logging.getLogger(__name__)


class AirscaleSecurityManager(FabAirflowSecurityManagerOverride):
    """Local accounts in the database, everyone else in the directory (module docstring)."""

    def _local(self) -> frozenset[str]:
        return local_logins(current_app.config.get("AIRSCALE_LOCAL_LOGINS_FILE"))

    def auth_user_ldap(self, username, password, rotate_session_id=True):
        who = authority(username, self._local())
        if who is None:
            return None
        if who == DATABASE:
            # The UI's login form calls only this method in LDAP mode: local accounts are
            # checked here against the database. (/auth/token then tries auth_user_db once more
            # after a wrong password: FAB counts that failure twice.)
            return super().auth_user_db(username, password, rotate_session_id=rotate_session_id)
        user = super().auth_user_ldap(username, password, rotate_session_id=rotate_session_id)
        if user is not None and not user.roles:
            log.info("LDAP login of %r refused: no role", username)
            return None
        return user

    def auth_user_db(self, username, password, rotate_session_id=True):
        if authority(username, self._local()) != DATABASE:
            return None  # a directory person: the directory decides, not a password kept here
        return super().auth_user_db(username, password, rotate_session_id=rotate_session_id)

    def _search_ldap(self, ldap, con, username):
        user_dn, attributes = super()._search_ldap(ldap, con, username)
        if user_dn is not None and not self._ldap_calculate_user_roles(attributes or {}):
            log.info("LDAP user %r is in no group of AUTH_ROLES_MAPPING and no default role is set", username)
            return None, None  # as if not found: nothing registered, login refused
        return user_dn, attributes

    def _ldap_calculate_user_roles(self, user_attributes):
        # FAB adds AUTH_USER_REGISTRATION_ROLE to everyone's mapped roles; airscale's
        # default_role is for a person in no mapped group only.
        roles = set(self.get_roles_from_keys(self.ldap_extract_list(user_attributes, self.auth_ldap_group_field)))
        default = current_app.config.get("AIRSCALE_DEFAULT_ROLE")
        if not roles and default:
            role = self.find_role(default)
            if role is None:
                log.warning("default role %r of auth.ldap does not exist", default)
            else:
                roles.add(role)
        return list(roles)

    def get_roles_from_keys(self, role_keys):
        wanted = {normalize_dn(k) for k in role_keys}
        roles = set()
        for dn, role_names in self.auth_roles_mapping.items():
            if normalize_dn(dn) in wanted:
                for name in role_names:
                    role = self.find_role(name)
                    if role is None:
                        log.warning("role %r of auth.ldap.group_roles does not exist", name)
                    else:
                        roles.add(role)
        return roles
