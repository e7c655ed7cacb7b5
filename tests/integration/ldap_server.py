"""A real OpenLDAP server for the tests: Debian's `slapd` (installed by scripts/bootstrap), started
as a process of the test on a loopback port, with a throwaway configuration and database in a
temporary folder, and stopped by its PID.

The directory has the shape of a company's: people under ou=people, groups (groupOfNames) under
ou=groups, and a service account under ou=services that may search people (the bind account
airscale's api-server uses). The `memberof` overlay keeps each person's `memberOf` attribute,
which FAB's group-to-role mapping reads (Active Directory has it natively). Entries are added
through the running server with `ldapadd` (slapadd would bypass the overlay), from LDIF on its
stdin; the directory manager's password is in a 0600 file (`-y`), never on a command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = "dc=airscale,dc=test"
MANAGER_DN = f"cn=manager,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
BIND_DN = f"cn=airflow,ou=services,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson")


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def person_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def slapd_conf(folder: Path, manager_password_hash: str) -> str:
    schema = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
    return f"""{schema}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args

# Passwords are for binding only; people and the service account read the tree.
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none

database mdb
maxsize 33554432
suffix "{SUFFIX}"
rootdn "{MANAGER_DN}"
rootpw {manager_password_hash}
directory {folder}/db
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
"""


def base_ldif() -> str:
    return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: airscale test
dc: airscale

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services
"""


def person_ldif(uid: str, password: str, given: str, surname: str) -> str:
    return f"""dn: {person_dn(uid)}
objectClass: inetOrgPerson
uid: {uid}
cn: {given} {surname}
givenName: {given}
sn: {surname}
mail: {uid}@airscale.test
userPassword: {password}
"""


def group_ldif(name: str, members: list[str]) -> str:
    lines = [f"dn: {group_dn(name)}", "objectClass: groupOfNames", f"cn: {name}"]
    lines += [f"member: {person_dn(m)}" for m in members]
    return "\n".join(lines) + "\n"


@dataclass
class Directory:
    """A running slapd: `url`, the bind account's password, and each person's password."""

    folder: Path
    port: int
    bind_password: str
    passwords: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def ldapadd(self, ldif: str) -> None:
        subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", MANAGER_DN, "-y", str(self.folder / "manager.pw")],
                       input=ldif, text=True, capture_output=True, check=True, timeout=30)

    def search(self, base: str, ldap_filter: str, *attrs: str) -> str:
        return subprocess.run(["ldapsearch", "-x", "-LLL", "-H", self.url, "-D", MANAGER_DN,
                               "-y", str(self.folder / "manager.pw"), "-b", base, ldap_filter, *attrs],
                              text=True, capture_output=True, check=True, timeout=30).stdout

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _hash(password: str) -> str:
    return subprocess.run(["slappasswd", "-T", "/dev/stdin"], input=password, text=True,
                          capture_output=True, check=True).stdout.strip()


def start(folder: Path, port: int, people: dict[str, tuple[str, str]], groups: dict[str, list[str]],
          timeout: float = 30) -> Directory:
    """slapd on 127.0.0.1:`port` with `people` (uid -> (given name, surname)), each given a random
    password, and `groups` (name -> member uids), plus the bind account."""
    if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
        raise RuntimeError("slapd is not installed: run scripts/bootstrap")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "db").mkdir(mode=0o700)
    manager_password = secrets.token_urlsafe(16)
    pw_file = folder / "manager.pw"
    pw_file.write_text(manager_password)  # ldapadd -y reads the file as is: no newline
    pw_file.chmod(0o600)
    conf = folder / "slapd.conf"
    conf.write_text(slapd_conf(folder, _hash(manager_password)))
    conf.chmod(0o600)
    d = Directory(folder, port, secrets.token_urlsafe(16),
                  {uid: secrets.token_urlsafe(12) for uid in people})
    log = open(folder / "slapd.log", "wb")  # noqa: SIM115 - the process writes it until stop()
    # -d 0: stay in the foreground (a child of this test, stopped by its PID), no debug output.
    d.proc = subprocess.Popen(["/usr/sbin/slapd", "-d", "0", "-f", str(conf), "-h", f"{d.url}/"],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        if d.proc.poll() is not None:
            raise RuntimeError(f"slapd exited {d.proc.returncode}: {(folder / 'slapd.log').read_text()[-2000:]}")
        probe = subprocess.run(["ldapsearch", "-x", "-H", d.url, "-b", "", "-s", "base", "namingContexts"],
                               capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            break
        if time.monotonic() > deadline:
            d.stop()
            raise RuntimeError(f"slapd did not answer on {d.url} within {timeout}s")
        time.sleep(0.2)
    bind_account = (f"dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                    f"cn: airflow\nuserPassword: {d.bind_password}\n")
    ldif = [base_ldif(), bind_account]
    ldif += [person_ldif(uid, d.passwords[uid], given, surname) for uid, (given, surname) in people.items()]
    ldif += [group_ldif(name, members) for name, members in groups.items()]
    d.ldapadd("\n".join(ldif))
    return d
