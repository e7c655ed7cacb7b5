"""People from an LDAP directory log in with the role their groups give them, against a real
OpenLDAP server (Debian's slapd, started by `tests/integration/ldap_server.py`) and a cluster of
this module's own (dev profile, monitoring off: LDAP needs its own api-server settings).

The directory: dora in airflow-viewers (Viewer), olaf in airflow-ops (Op), nina in no mapped
group (the spec sets no default_role: refused), and two entries named after airscale's local
accounts, `admin` and `lena`, with passwords the directory knows: they must not get in.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import time

import httpx
import pytest

from airscale.auth import passwords
from airscale.auth.capability import USER_CACHE_SECONDS
from airscale.runtime.airflow_config import api_url
from airscale.workload.client import AirflowClient
from tests.conftest import airscale, reachable_tmpdir, write_spec
from tests.integration import ldap_server
from tests.integration.conftest import HERE, PORT_OFFSET, SharedCluster, assert_no_secret_exposed, copy_dags

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LDAP_CLUSTER_PORT = 29700 + PORT_OFFSET
# slapd's port: outside every cluster block (29100-29999 + offset) and below the next checkout's
# (offset + 1000): `up` refuses a block with any port in use.
SLAPD_PORT = 30000 + PORT_OFFSET
DAG = "it_auth"
VIEWERS, OPS = ldap_server.group_dn("airflow-viewers"), ldap_server.group_dn("airflow-ops")


@pytest.fixture(scope="module")
def directory():
    root = reachable_tmpdir("airscale-it-slapd-")
    d = ldap_server.start(root / "slapd", SLAPD_PORT,
                          people={"dora": ("Dora", "Viewer"), "olaf": ("Olaf", "Operator"), "nina": ("Nina", "Nogroup"),
                                  "admin": ("Not", "Admin"), "lena": ("Other", "Lena")},
                          groups={"airflow-viewers": ["dora"], "airflow-ops": ["olaf", "admin", "lena"],
                                  "unmapped": ["nina"]})
    try:
        yield d
    finally:
        d.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def ldap_cluster(request, directory):
    root = reachable_tmpdir("airscale-it-ldap-")
    copy_dags(root / "dags", HERE / "dags_auth")
    bind_pw = root / "ldap-bind.pw"
    bind_pw.write_text(directory.bind_password + "\n")
    bind_pw.chmod(0o600)
    spec = {
        "cluster": {"name": "itldap", "base_port": LDAP_CLUSTER_PORT, "profile": "dev",
                    "data_dir": str(root / "data")},
        "dags_folder": str(root / "dags"),
        "schedulers": {"count": 1},
        "monitoring": {"enabled": False},
        "auth": {
            "users": {"lena": {"role": "Viewer"}},
            "ldap": {
                "server": directory.url,
                "bind_dn": ldap_server.BIND_DN,
                "bind_password_file": "ldap-bind.pw",  # relative to the spec file
                "search_base": ldap_server.PEOPLE,
                "search_filter": "(objectClass=inetOrgPerson)",
                # Written with other case and blanks than slapd's memberOf values: DNs compare as DNs.
                "group_roles": {VIEWERS.replace(",", ", ").upper(): "Viewer", OPS: "Op"},
            },
        },
    }
    shared = SharedCluster("ldap", root, write_spec(root, spec))
    try:
        shared.up()
        yield shared
    finally:
        shared.down(failures=bool(request.session.testsfailed))


def token(cluster, login: str, password: str) -> httpx.Response:
    return httpx.post(f"{api_url(cluster.spec)}/auth/token", json={"username": login, "password": password},
                      timeout=60)


def client(cluster, login: str, password: str) -> AirflowClient:
    return AirflowClient(api_url(cluster.spec), login, password)


def trigger(c: AirflowClient) -> httpx.Response:
    return c._http.post(f"/api/v2/dags/{DAG}/dagRuns", json={"logical_date": None, "conf": {}})


def ui_login(cluster, login: str, password: str) -> bool:
    """Log in through the UI's login form (FAB's LDAP login view, which only asks the security
    manager's auth_user_ldap): True when it lets the person in."""
    with httpx.Client(base_url=api_url(cluster.spec), follow_redirects=False, timeout=60) as c:
        page = c.get("/auth/login/")
        assert page.status_code == 200, page.text[:500]
        m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or re.search(
            r'value="([^"]+)"[^>]*name="csrf_token"', page.text)
        r = c.post("/auth/login/", data={"username": login, "password": password,
                                         "csrf_token": m.group(1) if m else ""})
        assert r.status_code in (302, 303), (r.status_code, r.text[:500])
        # Refused: back to the login form; let in: on to the page asked for.
        return "/login" not in r.headers["location"]


def creds(spec_path, login: str) -> str:
    return json.loads(airscale("creds", "-s", str(spec_path), "--user", login, "--json", check=True).stdout)["password"]


def test_directory_people_get_the_role_of_their_groups(ldap_cluster, directory):
    cluster, spec_path = ldap_cluster.cluster, ldap_cluster.spec_path
    dora = client(cluster, "dora", directory.passwords["dora"])
    olaf = client(cluster, "olaf", directory.passwords["olaf"])
    dora.wait_for_dag(DAG)  # a Viewer from the directory reads DAGs...
    assert trigger(dora).status_code == 403  # ...but may not run them
    r = trigger(olaf)
    assert r.status_code == 200, r.text  # an Op from the directory may

    # In no mapped group and no default_role: refused; a wrong password: refused.
    assert token(cluster, "nina", directory.passwords["nina"]).status_code == 401
    assert token(cluster, "olaf", directory.passwords["olaf"] + "x").status_code == 401
    assert token(cluster, "nobody", "whatever").status_code == 401

    rows = {u["login"]: u for u in json.loads(airscale("users", "list", "-s", str(spec_path), "--json",
                                                       check=True).stdout)}
    assert rows["olaf"]["roles"] == ["Op"] and rows["dora"]["roles"] == ["Viewer"]
    assert rows["olaf"]["name"] == "Olaf Operator" and not rows["olaf"]["in_spec"] and rows["olaf"]["directory"]
    assert "nina" not in rows  # nothing registered for a refused person

    events = json.loads(airscale("audit", "-s", str(spec_path), "--user", "olaf", "--since", "10m", "--json",
                                 check=True).stdout)
    assert any(e["event"] == "trigger_dag_run" and e["dag_id"] == DAG for e in events), events

    # Roles follow the directory at each login: dora joins airflow-ops, logs in again, triggers.
    subprocess.run(["ldapmodify", "-x", "-H", directory.url, "-D", ldap_server.MANAGER_DN,
                    "-y", str(directory.folder / "manager.pw")], check=True, text=True, capture_output=True,
                   input=f"dn: {OPS}\nchangetype: modify\nadd: member\nmember: {ldap_server.person_dn('dora')}\n")
    # The api-server keeps the user behind a token [fab] cache_ttl seconds: the new role shows
    # within that, without waiting for the old token to expire.
    dora_again = client(cluster, "dora", directory.passwords["dora"])
    deadline = time.monotonic() + USER_CACHE_SECONDS + 10
    while (r := trigger(dora_again)).status_code == 403 and time.monotonic() < deadline:
        time.sleep(1)
    assert r.status_code == 200, r.text


def test_local_accounts_stay_on_airscale_passwords(ldap_cluster, directory):
    cluster, spec_path = ldap_cluster.cluster, ldap_cluster.spec_path
    # airscale's admin (the CLI's account) and the spec's lena log in with airscale's passwords...
    assert token(cluster, "admin", creds(spec_path, "admin")).status_code == 201
    lena = client(cluster, "lena", creds(spec_path, "lena"))
    assert trigger(lena).status_code == 403  # lena is a Viewer here, whatever the directory says
    # ...and directory entries of the same names, with the directory's passwords, do not get in.
    assert token(cluster, "admin", directory.passwords["admin"]).status_code == 401
    assert token(cluster, "lena", directory.passwords["lena"]).status_code == 401
    # Airflow finds users case-insensitively and LDAP ignores blanks around a uid: neither opens
    # a way to the directory's admin (whose groups would rewrite the local admin's roles).
    for variant in ("ADMIN", "Admin", " admin", "admin "):
        assert token(cluster, variant, directory.passwords["admin"]).status_code == 401, variant
    assert token(cluster, "ADMIN", creds(spec_path, "admin")).status_code == 201
    # The UI's login form, which stock LDAP mode sends to the directory only, too.
    assert ui_login(cluster, "admin", creds(spec_path, "admin"))
    assert not ui_login(cluster, "admin", directory.passwords["admin"])
    assert ui_login(cluster, "olaf", directory.passwords["olaf"])
    assert not ui_login(cluster, "nina", directory.passwords["nina"])
    rows = {u["login"]: u for u in json.loads(airscale("users", "list", "-s", str(spec_path), "--json",
                                                       check=True).stdout)}
    assert rows["admin"]["roles"] == ["Admin"] and rows["lena"]["roles"] == ["Viewer"]
    assert not rows["admin"]["directory"] and not rows["lena"]["directory"]

    # A directory person's password is the directory's: airscale refuses to set one.
    assert token(cluster, "olaf", directory.passwords["olaf"]).status_code == 201
    refused = airscale("users", "reset-password", "olaf", "-s", str(spec_path))
    assert refused.returncode == 2 and "directory" in refused.stderr and "Traceback" not in refused.stderr

    # `up` again keeps the directory's people (they are not in auth.users, and not airscale's).
    airscale("up", "-s", str(spec_path), check=True, timeout=600)
    assert token(cluster, "olaf", directory.passwords["olaf"]).status_code == 201
    assert token(cluster, "admin", creds(spec_path, "admin")).status_code == 201


def test_bind_password_stays_in_private_files(ldap_cluster, directory):
    cluster = ldap_cluster.cluster
    layout = cluster.layout
    assert stat.S_IMODE(layout.webserver_config.stat().st_mode) == 0o600
    assert directory.bind_password in layout.webserver_config.read_text()
    assert directory.bind_password not in ldap_cluster.spec_path.read_text()
    secret_values = [directory.bind_password, *passwords.load(layout).values()]
    assert_no_secret_exposed(cluster, secret_values)
