"""PostgreSQL primary + hot standby with automatic failover (spec `ha.database.enabled`).

Design, and why:
- Patroni manages both PostgreSQL nodes (bootstrap, streaming replication, failover,
  pg_rewind of a returning old primary); etcd holds the leader key. Measured here: a node
  crash (Patroni and PostgreSQL killed) is taken over by the standby after about `ttl`; a
  postmaster crash alone is restarted in place in ~10 s; 0 acknowledged rows lost.
- The DCS has no single point of failure: three etcd members (`etcd-1..3`, each its own data
  folder and ports), so one hung or dead member leaves a quorum of two; Patroni lists all three
  and its etcd3 client gives each request `retry_timeout / 3` (2.3 s) per member before trying
  the next (patroni/dcs/etcd.py `_calculate_timeouts`), so a SIGSTOPped member, which accepts
  TCP connections but never answers, costs one request 2.3 s, not the leader key. With a
  single member, a hung etcd demoted the primary within 10 s (writes failed for as long as it
  was stopped).
- Patroni's DCS failsafe mode (`failsafe_mode`, Patroni >= 3.0, docs/dcs_failsafe_mode.rst): if
  the whole DCS is unreachable, the primary stays primary as long as it reaches every member's
  REST API (POST /failsafe) instead of demoting itself. It lives in the dynamic configuration
  (the DCS `/config` key), so besides `bootstrap.dcs` for new clusters, `ensure_failsafe` PATCHes
  `/config` of a running cluster bootstrapped without it.
- A cluster made with the single member (`ha/etcd`, ports 90/91) migrates on `up`: failsafe
  mode is switched on first, while the old DCS still answers, so the primary rides out the
  switch; the old member is removed and the three new ones start empty (new data folders, a
  new cluster token). Member 1 listens on the old client port, so a Patroni still running with
  the old one-host list reaches it and learns the others from etcd's member list. Patroni 3.0.2
  re-populates an empty DCS from the running nodes (patroni/ha.py `_run_cycle`): the primary
  takes the leader key again and writes `/initialize` and `/config`; the standby does not race
  it while the primary's REST API answers that it is not in recovery ("Primary is still
  alive"). The old data folder is deleted once the new DCS holds the leader key.
- Airflow never connects to a node directly: HAProxy listens on the cluster's usual PostgreSQL
  port (`Ports.postgres`) and sends connections only to the node whose Patroni REST API answers
  200 on `/primary`, and cuts the sessions of a node that stops answering
  (`on-marked-down shutdown-sessions`). libpq multi-host with target_session_attrs alone keeps
  writing to an old primary when only Patroni dies (~300 acknowledged rows lost in a test
  here); the `/primary` check follows the leader key instead.
- While no node is primary, HAProxy sends connections to the streaming standby (a `backup`
  server that tracks Patroni's `/replica`): a hung primary keeps its leader key until `ttl`
  runs out, and for those 20 s or more the REST API and the UI would answer nothing; the
  standby answers reads, and a write fails as fast as it would with no database. Sessions on
  the standby are cut once a primary is marked up, so none stays read-only.
- Everything runs under the cluster's supervisor: `etcd-1..3` (stage 0), `pg-1`, `pg-2` (Patroni,
  as the postgres user, stage 1) and `postgres` (HAProxy, stage 1), so `up`, `down`, restarts
  and `airscale logs` work as for the single PostgreSQL.

Secrets: the superuser password is the cluster's; the replication and Patroni REST passwords
are derived from it (HMAC), so no new secret needs storing. Config files are 0600, owned by
the user that reads them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from pathlib import Path

import httpx
import yaml

from airscale.runtime.component import Component, postgres_owner, postgres_user
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets, write_private
from airscale.spec import Spec
from airscale.spec.ha import PATRONI_RETRY_TIMEOUT
from airscale.spec.ports import HA_DATABASE_NODES

HAPROXY = "postgres"  # the name Airflow's database endpoint always had
NODES = HA_DATABASE_NODES
ETCD_MEMBERS = (1, 2, 3)
# The single member's data folder before the DCS had three members (see the module docstring).
OLD_ETCD_DATA = "etcd"


def node_name(i: int) -> str:
    return f"pg-{i}"


def etcd_name(i: int) -> str:
    return f"etcd-{i}"


def etcd_data(layout: Layout, i: int) -> Path:
    return root(layout) / etcd_name(i)


def derived_password(secrets: Secrets, purpose: str) -> str:
    mac = hmac.new(secrets.postgres_superuser_password.encode(), purpose.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def root(layout: Layout) -> Path:
    return layout.root / "ha"


def patroni_yml(layout: Layout, i: int) -> Path:
    return root(layout) / f"{node_name(i)}.yml"


def haproxy_cfg(layout: Layout) -> Path:
    return root(layout) / "haproxy.cfg"


# -- configuration (pure) -------------------------------------------------------------------
# The primary keeps running when no etcd member answers, as long as it reaches the standby's
# REST API (Patroni docs/dcs_failsafe_mode.rst). Dynamic configuration: see `ensure_failsafe`.
FAILSAFE = {"failsafe_mode": True}


ETCD_HISTORY = "5m"
ETCD_SNAPSHOT_COUNT = 10_000


def etcd_command(spec: Spec, layout: Layout, i: int) -> tuple[str, ...]:
    ports = spec.ports
    peers = ",".join(f"{etcd_name(m)}=http://127.0.0.1:{ports.etcd_peer(m)}" for m in ETCD_MEMBERS)
    client = f"http://127.0.0.1:{ports.etcd_client(i)}"
    peer = f"http://127.0.0.1:{ports.etcd_peer(i)}"
    return (
        _which("etcd"), "--name", etcd_name(i), "--data-dir", str(etcd_data(layout, i)),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        # Read only when the data folder is new: a restarted member rejoins from its own WAL.
        "--initial-cluster", peers, "--initial-cluster-state", "new",
        # Not the single member's token: a new member and a not yet stopped old one on the
        # same peer port ignore each other instead of mixing two clusters.
        "--initial-cluster-token", f"airscale-{spec.cluster.name}-dcs3",
        # Patroni renews its leader key every loop_wait: without compaction etcd keeps every
        # revision, its memory and database grow for as long as the cluster runs, and at the 2 GiB
        # quota it refuses writes (no leader, no failover). Five minutes of history are kept,
        # compacted every five minutes: what Kubernetes' API server does to its etcd
        # (--etcd-compaction-interval 5m). Patroni watches only the current keys.
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", ETCD_HISTORY,
        # Raft entries applied since the last snapshot stay in memory: etcd 3.4 snapshots every
        # 100,000, a day of Patroni's writes, and the leader's memory grew 23 % in the soak's
        # 40 minutes after warm-up. 10,000 is etcd's own default since 3.6.
        "--snapshot-count", str(ETCD_SNAPSHOT_COUNT),
    )

def patroni_config(spec: Spec, layout: Layout, secrets: Secrets, bin_dir: Path, i: int) -> dict:
    from airscale.tuning.apply import planned_postgres_settings

    ports, host, db = spec.ports, spec.client_host, spec.ha.database
    params = {
        "max_connections": spec.database.max_connections,
        "wal_level": "replica",
        "hot_standby": "on",
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        # pg_rewind needs it to bring a failed old primary back as a standby.
        "wal_log_hints": "on",
        **planned_postgres_settings(spec),
    }
    return {
        "scope": f"airscale-{spec.cluster.name}",
        "namespace": "/airscale/",
        "name": node_name(i),
        "restapi": {
            "listen": f"{host}:{ports.patroni_api(i)}",
            "connect_address": f"{host}:{ports.patroni_api(i)}",
            # Reads (/primary, /cluster) stay open for HAProxy; changes need this login.
            "authentication": {"username": "patroni", "password": derived_password(secrets, "patroni-api")},
        },
        # All three members: each request tries them in turn, retry_timeout / 3 each.
        "etcd3": {"hosts": [f"127.0.0.1:{ports.etcd_client(m)}" for m in ETCD_MEMBERS]},
        "bootstrap": {
            "dcs": {
                "ttl": db.ttl,
                "loop_wait": db.loop_wait,
                "retry_timeout": PATRONI_RETRY_TIMEOUT,
                **FAILSAFE,
                # A standby further behind than this (bytes) is not promoted: better a short
                # outage than losing acknowledged writes.
                "maximum_lag_on_failover": 1048576,
                "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": params},
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, {"auth-host": "scram-sha-256"},
                       {"auth-local": "peer"}],
        },
        "postgresql": {
            "listen": f"{host}:{ports.pg_node(i)}",
            "connect_address": f"{host}:{ports.pg_node(i)}",
            "data_dir": str(root(layout) / f"{node_name(i)}-data"),
            "bin_dir": str(bin_dir),
            "pgpass": str(root(layout) / f"{node_name(i)}.pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": secrets.postgres_superuser_password},
                "replication": {"username": "replicator",
                                "password": derived_password(secrets, "replication")},
                "rewind": {"username": "postgres", "password": secrets.postgres_superuser_password},
            },
            "pg_hba": [
                "host replication replicator 127.0.0.1/32 scram-sha-256",
                "host all all 127.0.0.1/32 scram-sha-256",
                "host all all ::1/128 scram-sha-256",
                *(["host all all 0.0.0.0/0 scram-sha-256"]
                  if host not in ("127.0.0.1", "localhost", "::1") else []),
            ],
            # No unix socket (a deep data_dir path can exceed its 107-byte limit): TCP only.
            "parameters": {"unix_socket_directories": ""},
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }


# A standby further behind its primary than this is not read from while no node is primary.
STANDBY_READ_MAX_LAG_BYTES = 16 * 2**20


def haproxy_config(spec: Spec) -> str:
    ports, host, maxconn = spec.ports, spec.client_host, spec.database.max_connections
    primaries = "\n".join(
        f"    server {node_name(i)} {host}:{ports.pg_node(i)} maxconn {maxconn} "
        f"check port {ports.patroni_api(i)} on-marked-up shutdown-backup-sessions"
        for i in NODES
    )
    backups = "\n".join(
        f"    server {node_name(i)}-standby {host}:{ports.pg_node(i)} maxconn {maxconn} backup "
        f"track standbys/{node_name(i)}"
        for i in NODES
    )
    checks = "\n".join(f"    server {node_name(i)} {host}:{ports.pg_node(i)} check port {ports.patroni_api(i)}"
                       for i in NODES)
    return f"""# Generated by airscale: Airflow's database endpoint, routed to the Patroni primary, and
# to the streaming standby for reads while there is none.
global
    maxconn {maxconn * 2 + 50}

defaults
    mode tcp
    timeout connect 4s
    # Airflow keeps pooled connections idle for long: do not cut them.
    timeout client 8h
    timeout server 8h
    timeout check 2s

listen postgres
    bind {spec.cluster.listen_host}:{ports.postgres}
    # 200 only from the node holding the leader key; checked every second, two failures in
    # a row mark a node down and its open sessions are cut, so nobody writes to a demoted one.
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
{primaries}
    # While no node is primary (a failover: the old primary hung or dead and the leader key not
    # yet expired, about ha.database.ttl), connections go to the streaming standby: reads are
    # answered (the REST API, the UI, a task reading a Variable), writes fail at once as they
    # would with no database. When a primary is marked up again, every session on the standby
    # is cut (shutdown-backup-sessions), so no pooled connection stays read-only.
{backups}

# Health of each node as a standby, for the backup servers above (no traffic goes here).
backend standbys
    option httpchk GET /replica?lag={STANDBY_READ_MAX_LAG_BYTES}
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{checks}
"""


def components(spec: Spec, layout: Layout, bin_dir: Path | None) -> list[Component]:
    out = [Component(etcd_name(i), "etcd", etcd_command(spec, layout, i), stage=0) for i in ETCD_MEMBERS]
    for i in NODES:
        out.append(Component(
            node_name(i), "patroni", (_which("patroni"), str(patroni_yml(layout, i))), stage=1,
            # Patroni refuses root, and PostgreSQL with it; supervisord switches user itself.
            user=postgres_user(),
            # SIGTERM: Patroni stops PostgreSQL cleanly (a primary hands over first).
            stopsignal="TERM", stopwaitsecs=60,
            # SIGHUP: Patroni reloads its file and applies PostgreSQL settings itself (a
            # restart of a member would be a failover).
            reads=(patroni_yml(layout, i),), reload_signal="HUP",
        ))
    out.append(Component(HAPROXY, "postgres", (_which("haproxy"), "-db", "-f", str(haproxy_cfg(layout))), stage=1,
                         reads=(haproxy_cfg(layout),)))
    return out


def _which(name: str) -> str:
    import shutil

    return shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin") or name


def missing_binaries() -> list[str]:
    """The HA programs not installed (Debian packages etcd-server, patroni, haproxy)."""
    return [n for n in ("etcd", "patroni", "haproxy") if _which(n) == n]


# -- side effects ---------------------------------------------------------------------------
def prepare(spec: Spec, layout: Layout, secrets: Secrets, bin_dir: Path) -> None:
    """Write the configuration files (before the supervisor starts anything)."""
    missing = missing_binaries()
    if missing:
        from airscale.errors import AirscaleError

        raise AirscaleError(
            f"ha.database.enabled needs {', '.join(missing)}, which is not installed",
            "apt-get install etcd-server patroni haproxy, or set ha.database.enabled: false",
        )
    d = root(layout)
    d.mkdir(mode=0o755, exist_ok=True)
    owner = postgres_owner()
    if owner:
        os.chown(d, *owner)
    for i in ETCD_MEMBERS:
        etcd_data(layout, i).mkdir(mode=0o700, exist_ok=True)
    for i in NODES:
        path = patroni_yml(layout, i)
        write_private(path, yaml.safe_dump(patroni_config(spec, layout, secrets, bin_dir, i), sort_keys=False))
        if owner:
            os.chown(path, *owner)
    haproxy_cfg(layout).write_text(haproxy_config(spec))


# -- state ----------------------------------------------------------------------------------
def _patroni_get(spec: Spec, path: str, timeout: float = 2.0) -> tuple[str, httpx.Response] | None:
    """(base URL, response) of the first node whose Patroni REST API answers `GET path`."""
    for i in NODES:
        url = f"http://{spec.client_host}:{spec.ports.patroni_api(i)}"
        try:
            return url, httpx.get(f"{url}{path}", timeout=timeout)
        except httpx.HTTPError:
            continue
    return None


def cluster_members(spec: Spec, timeout: float = 2.0) -> list[dict]:
    """Patroni's view of the pair (`GET /cluster` on any node that answers): name, role
    ('leader' or 'replica'), state ('running', 'streaming'), lag in bytes."""
    got = _patroni_get(spec, "/cluster", timeout)
    try:
        return got[1].json().get("members", []) if got else []
    except ValueError:
        return []


def primary(spec: Spec) -> str | None:
    for m in cluster_members(spec):
        if m.get("role") in ("leader", "master", "primary"):
            return m.get("name")
    return None


def describe(member: dict | None) -> tuple[bool, str]:
    """Health and a one-line detail of one node for `airscale status` (pure)."""
    if member is None:
        return False, "not in the Patroni cluster"
    role, state = member.get("role"), member.get("state")
    if role in ("leader", "master", "primary"):
        return state == "running", f"PRIMARY ({state})"
    lag = member.get("lag")
    lag_s = "unknown" if lag in (None, "unknown") else f"{int(lag)} B"
    return state in ("streaming", "running"), f"standby ({state}), replication lag {lag_s}"


def node_health(spec: Spec, name: str) -> tuple[bool, str]:
    members = {m.get("name"): m for m in cluster_members(spec)}
    return describe(members.get(name))


def postmaster_pid(layout: Layout, name: str) -> int | None:
    try:
        return int((root(layout) / f"{name}-data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def writable_node(spec: Spec, secrets: Secrets) -> str | None:
    """The node the database endpoint (HAProxy) reaches, if it accepts writes; else None."""
    from airscale.runtime.postgres import superuser_connect

    try:
        conn = superuser_connect(spec, secrets, timeout=2)
    except Exception:  # noqa: BLE001 - no primary reachable yet
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port(), pg_is_in_recovery()")
            port, standby = cur.fetchone()
    except Exception:  # noqa: BLE001
        return None
    finally:
        conn.close()
    ports = spec.ports
    for i in NODES:
        if ports.pg_node(i) == port and not standby:
            return node_name(i)
    return None


def etcd_health(spec: Spec, member: int) -> tuple[bool, str]:
    """One member's own `/health` (true only while it is part of a quorum that has a leader),
    and whether it is the raft leader."""
    try:
        r = httpx.get(f"http://127.0.0.1:{spec.ports.etcd_client(member)}/health", timeout=2)
        ok = str(r.json().get("health")) == "true"
    except (httpx.HTTPError, ValueError) as e:
        return False, f"no answer ({e.__class__.__name__})"
    if not ok:
        return False, r.text[:60]
    return True, "healthy, raft leader" if etcd_is_leader(spec, member) else "healthy, follower"


def etcd_is_leader(spec: Spec, member: int) -> bool:
    """The member says it is the raft leader (`/v3/maintenance/status`: its id is the leader's)."""
    try:
        r = httpx.post(f"http://127.0.0.1:{spec.ports.etcd_client(member)}/v3/maintenance/status",
                       json={}, timeout=2).json()
        return bool(r.get("leader")) and r.get("leader") == r.get("header", {}).get("member_id")
    except (httpx.HTTPError, ValueError):
        return False


def etcd_leader(spec: Spec) -> int | None:
    """The member that is the raft leader, if one says so."""
    return next((i for i in ETCD_MEMBERS if etcd_is_leader(spec, i)), None)


def etcd_member(name: str) -> int:
    """The member number of component `name` (etcd-2 -> 2)."""
    return int(name.rsplit("-", 1)[1])


# -- dynamic configuration ------------------------------------------------------------------
def ensure_failsafe(spec: Spec, secrets: Secrets, wait: float = 0.0) -> bool | None:
    """Switch Patroni's failsafe mode on in the dynamic configuration (the DCS `/config` key)
    of a running cluster that was bootstrapped without it: `bootstrap.dcs` is read only once.

    None when no Patroni REST API answers (nothing runs: a new cluster gets it from
    `bootstrap.dcs`); else whether it is on. With `wait`, tries that long: a primary that has
    just re-populated an empty DCS writes `/config` one loop after the leader key; and waits for
    it to write the `/failsafe` key (the members it must reach), without which failsafe mode
    cannot hold the primary."""
    deadline = time.monotonic() + wait
    while True:
        on = _failsafe_on(spec, secrets)
        if on is None:
            return None
        if on and (not wait or _failsafe_key_written(spec)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)


def _failsafe_on(spec: Spec, secrets: Secrets) -> bool | None:
    got = _patroni_get(spec, "/config", timeout=5)
    if got is None:
        return None
    url, r = got
    try:
        if r.json().get("failsafe_mode") is not True:
            auth = ("patroni", derived_password(secrets, "patroni-api"))
            httpx.patch(f"{url}/config", json=FAILSAFE, auth=auth, timeout=10).raise_for_status()
    except (httpx.HTTPError, ValueError):  # 502 while the DCS has no /config (being re-populated)
        return False
    return True


def _failsafe_key_written(spec: Spec) -> bool:
    got = _patroni_get(spec, "/failsafe")
    try:
        return bool(got and got[1].status_code == 200 and got[1].json())
    except ValueError:
        return False


def failsafe_wait(spec: Spec) -> float:
    """How long the primary may take to write `/failsafe` after the mode is switched on: it does
    in its next loop, which the config change wakes (a busy loop: loop_wait + retry_timeout)."""
    return 2.0 * (spec.ha.database.loop_wait + PATRONI_RETRY_TIMEOUT)


def single_member_dcs(layout: Layout) -> bool:
    """The cluster was made with the single etcd member and has not finished migrating."""
    return (root(layout) / OLD_ETCD_DATA).is_dir()


def after_start(spec: Spec, layout: Layout, secrets: Secrets) -> None:
    """Once `up` has started everything: failsafe mode on (a cluster bootstrapped without it keeps
    its old dynamic configuration, also in a new DCS, which the primary re-populates from its
    own copy); then the migrated single member's data folder goes, once the new DCS holds the
    leader key again."""
    import shutil

    if ensure_failsafe(spec, secrets, wait=failsafe_wait(spec)) and single_member_dcs(layout) and primary(spec):
        shutil.rmtree(root(layout) / OLD_ETCD_DATA)


def ports(spec: Spec) -> dict[str, int]:
    """Every port the HA components listen on, by what listens there (pure). `postgres`, the
    HAProxy endpoint, is the runtime's own."""
    p = spec.ports
    out: dict[str, int] = {}
    for i in ETCD_MEMBERS:
        out[f"{etcd_name(i)} (client)"] = p.etcd_client(i)
        out[f"{etcd_name(i)} (peer)"] = p.etcd_peer(i)
    for i in NODES:
        out[f"{node_name(i)} (PostgreSQL)"] = p.pg_node(i)
        out[f"{node_name(i)} (Patroni REST API)"] = p.patroni_api(i)
    return out
