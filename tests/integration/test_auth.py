"""People with roles and the audit trail, on the shared `default` cluster (FAB auth manager):
its spec names vera (Viewer), otto (Op), ursula (User) and fiona (it_auth_trigger, a role the
spec defines: read every DAG, trigger only it_auth) besides admin.

Each person logs in through the api-server's /auth/token with the password airscale generated,
read back with `airscale creds --user`; what each may do is Airflow's FAB roles, and `airscale
audit` must name the person behind each action.
"""

from __future__ import annotations

import json
import stat
import time
import uuid

import httpx
import pytest

from airscale.auth import passwords
from airscale.auth.capability import USER_CACHE_SECONDS
from airscale.runtime.airflow_config import api_url
from airscale.workload.client import AirflowClient
from tests.conftest import airscale
from tests.integration.conftest import assert_no_secret_exposed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DAG = "it_auth"


def creds(spec_path, login: str) -> dict:
    return json.loads(airscale("creds", "-s", str(spec_path), "--user", login, "--json", check=True).stdout)


def login_as(cluster, spec_path, login: str) -> AirflowClient:
    return AirflowClient(api_url(cluster.spec), login, creds(spec_path, login)["password"])


def token_status(cluster, login: str, password: str) -> int:
    return httpx.post(f"{api_url(cluster.spec)}/auth/token", json={"username": login, "password": password},
                      timeout=30).status_code


def trigger(client: AirflowClient) -> httpx.Response:
    return client._http.post(f"/api/v2/dags/{DAG}/dagRuns", json={"logical_date": None, "conf": {}})


def test_roles_decide_who_may_trigger_and_audit_names_each_person(healthy_default):
    cluster, spec_path = healthy_default.cluster, healthy_default.spec_path
    vera, otto, ursula = (login_as(cluster, spec_path, who) for who in ("vera", "otto", "ursula"))
    vera.wait_for_dag(DAG)  # a Viewer reads DAGs...
    assert trigger(vera).status_code == 403  # ...but may not run them

    r = trigger(otto)
    assert r.status_code == 200, r.text
    otto_run = r.json()["dag_run_id"]
    r = trigger(ursula)
    assert r.status_code == 200, r.text

    # A User runs DAGs but does not manage pools; an Op does.
    pool = {"name": f"it-auth-{uuid.uuid4().hex[:8]}", "slots": 1}
    assert ursula._http.post("/api/v2/pools", json=pool).status_code == 403
    r = otto._http.post("/api/v2/pools", json=pool)
    assert r.status_code in (200, 201), r.text
    assert otto._http.delete(f"/api/v2/pools/{pool['name']}").status_code == 204

    events = json.loads(airscale("audit", "-s", str(spec_path), "--dag", DAG, "--since", "10m", "--json",
                                 check=True).stdout)
    triggers = [(e["user"], e["event"]) for e in events if e["event"] == "trigger_dag_run"]
    assert ("otto", "trigger_dag_run") in triggers and ("ursula", "trigger_dag_run") in triggers
    assert all(user not in ("vera", "admin") for user, _ in triggers), triggers
    # --user narrows to one person.
    only_otto = json.loads(airscale("audit", "-s", str(spec_path), "--user", "otto", "--since", "10m", "--json",
                                    check=True).stdout)
    assert only_otto and {e["user"] for e in only_otto} == {"otto"}
    assert any(e["event"] == "trigger_dag_run" and e["dag_id"] == DAG for e in only_otto)
    assert otto_run  # the run otto started is his: it stays queued on the paused DAG


def test_a_role_of_the_spec_triggers_only_the_dags_it_names(healthy_default):
    cluster, spec_path = healthy_default.cluster, healthy_default.spec_path
    fiona = login_as(cluster, spec_path, "fiona")
    fiona.wait_for_dag("it_auth_other")
    assert fiona._http.get("/api/v2/dags/it_auth_other").status_code == 200  # can_read on DAGs
    r = trigger(fiona)
    assert r.status_code == 200, r.text  # can_edit on DAG:it_auth + can_create on DAG Runs
    r = fiona._http.post("/api/v2/dags/it_auth_other/dagRuns", json={"logical_date": None, "conf": {}})
    assert r.status_code == 403, r.text
    assert fiona._http.post("/api/v2/pools", json={"name": "it-auth-fiona", "slots": 1}).status_code == 403
    rows = {u["login"]: u for u in json.loads(airscale("users", "list", "-s", str(spec_path), "--json",
                                                       check=True).stdout)}
    assert rows["fiona"]["roles"] == ["it_auth_trigger"]


def test_users_match_the_spec_and_passwords_stay_private(healthy_default):
    cluster, spec_path = healthy_default.cluster, healthy_default.spec_path
    rows = {u["login"]: u for u in json.loads(airscale("users", "list", "-s", str(spec_path), "--json",
                                                       check=True).stdout)}
    assert {login: (u["roles"], u["active"], u["in_spec"]) for login, u in rows.items()}.items() >= {
        "admin": (["Admin"], True, True), "vera": (["Viewer"], True, True), "otto": (["Op"], True, True),
        "ursula": (["User"], True, True)}.items()
    assert rows["otto"]["name"] == "Otto Operator"

    layout = cluster.layout
    assert stat.S_IMODE(layout.admin_passwords.stat().st_mode) == 0o600
    secret_values = list(passwords.load(layout).values())
    # No password on a command line or in the environment of the cluster's processes, nor in a log.
    assert_no_secret_exposed(cluster, secret_values)


def test_ad_hoc_user_add_reset_remove(healthy_default):
    cluster, spec_path = healthy_default.cluster, healthy_default.spec_path
    s = str(spec_path)
    added = json.loads(airscale("users", "add", "tmpbob", "--role", "viewer", "-s", s, "--json", check=True).stdout)
    assert added["created"] and added["in_spec"] is False
    assert token_status(cluster, "tmpbob", added["password"]) == 201

    reset = json.loads(airscale("users", "reset-password", "tmpbob", "-s", s, "--json", check=True).stdout)
    assert token_status(cluster, "tmpbob", added["password"]) == 401
    assert token_status(cluster, "tmpbob", reset["password"]) == 201
    assert creds(spec_path, "tmpbob")["password"] == reset["password"]

    bob = AirflowClient(api_url(cluster.spec), "tmpbob", reset["password"])
    assert bob._http.get("/api/v2/dags").status_code == 200
    airscale("users", "remove", "tmpbob", "-s", s, check=True)
    assert token_status(cluster, "tmpbob", reset["password"]) == 401
    # A token of before dies too, once the api-server's user cache ([fab] cache_ttl) expires.
    deadline = time.monotonic() + USER_CACHE_SECONDS + 10
    while bob._http.get("/api/v2/dags").status_code == 200:
        assert time.monotonic() < deadline, "a deactivated user's token still works"
        time.sleep(1)
    rows = {u["login"]: u for u in json.loads(airscale("users", "list", "-s", s, "--json", check=True).stdout)}
    assert rows["tmpbob"]["active"] is False  # kept, so the audit log's name still means someone

    # The spec is the source of truth: `up` deactivates a user it does not name.
    carl = json.loads(airscale("users", "add", "tmpcarl", "--role", "User", "-s", s, "--json", check=True).stdout)
    airscale("up", "-s", s, check=True)
    assert token_status(cluster, "tmpcarl", carl["password"]) == 401
    assert token_status(cluster, "otto", creds(spec_path, "otto")["password"]) == 201  # named: untouched

    refused = airscale("users", "remove", "admin", "-s", s)
    assert refused.returncode == 2 and "admin" in refused.stderr and "Traceback" not in refused.stderr
