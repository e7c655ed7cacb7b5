from __future__ import annotations

import json
import stat
from pathlib import Path

from airscale.assembly import CAPABILITIES
from airscale.auth import passwords
from airscale.auth.capability import FAB_AUTH_MANAGER, SIMPLE_AUTH_MANAGER
from airscale.runtime.airflow_config import merged_settings
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets, load, write_private
from airscale.spec import Spec


def layout(tmp_path: Path) -> Layout:
    lay = Layout(tmp_path)
    lay.make_dirs()
    return lay


def test_passwords_are_generated_once_and_private(tmp_path):
    lay = layout(tmp_path)
    first = passwords.ensure(lay, ["admin", "alice"], generate=iter(["pw1", "pw2", "pw3"]).__next__)
    assert first == {"admin": "pw1", "alice": "pw2"}
    again = passwords.ensure(lay, ["admin", "alice", "bob"], generate=iter(["x"]).__next__)
    assert again == {"admin": "pw1", "alice": "pw2", "bob": "x"}
    assert stat.S_IMODE(lay.admin_passwords.stat().st_mode) == 0o600


def test_each_password_is_shown_once(tmp_path):
    lay = layout(tmp_path)
    passwords.ensure(lay, ["alice", "bob"], generate=iter(["a", "b"]).__next__)
    assert passwords.take_unshown(lay, ["alice"]) == {"alice": "a"}
    assert passwords.take_unshown(lay, ["alice", "bob"]) == {"bob": "b"}
    assert passwords.take_unshown(lay, ["alice", "bob"]) == {}


def test_admin_password_change_reaches_the_tools_copy(tmp_path):
    lay = layout(tmp_path)
    write_private(lay.secrets_file, json.dumps(Secrets.generate().__dict__))
    passwords.set_password(lay, "admin", "new-one")
    assert load(lay.secrets_file).admin_password == "new-one"
    assert passwords.password_of(lay, "admin") == "new-one"
    assert stat.S_IMODE(lay.secrets_file.stat().st_mode) == 0o600


def test_auth_manager_follows_the_spec(tmp_path):
    lay, secrets = Layout(tmp_path), Secrets.generate()
    fab = merged_settings(Spec(), lay, secrets, CAPABILITIES)
    assert fab["core"]["auth_manager"] == FAB_AUTH_MANAGER
    assert fab["fab"]["auth_role_public"] == ""  # no anonymous access
    assert fab["fab"]["cache_ttl"] <= 5  # a deactivated user's token dies within seconds
    simple = merged_settings(Spec.model_validate({"auth": {"manager": "simple"}}), lay, secrets, CAPABILITIES)
    assert simple["core"]["auth_manager"] == SIMPLE_AUTH_MANAGER
    assert "fab" not in simple


def test_new_passwords_are_unapplied_until_airflow_has_them(tmp_path):
    lay = layout(tmp_path)
    passwords.ensure(lay, ["admin", "alice"], generate=iter(["a", "b"]).__next__)
    passwords.ensure(lay, ["admin", "alice", "bob"], generate=iter(["c"]).__next__)
    assert passwords.unapplied(lay) == ["admin", "alice", "bob"]
    passwords.applied(lay, ["alice"])
    assert passwords.unapplied(lay) == ["admin", "bob"]
    passwords.applied(lay)
    assert passwords.unapplied(lay) == []
    passwords.ensure(lay, ["admin", "alice", "bob"])  # nothing new: nothing to apply
    assert passwords.unapplied(lay) == []
