"""Health of each component, read where Airflow itself records it.

api-server: the body of /api/v2/monitor/health (it answers 200 even when unhealthy).
Schedulers, dag-processor, triggerer: their job-table heartbeats, matched by the per-component
hostname. Workers: Celery's control ping. PostgreSQL and Redis: a login.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import psycopg2
import redis as redis_client

from airscale.runtime import api_servers, broker
from airscale.runtime.airflow_config import api_url, database_url
from airscale.runtime.hostname import component_hostname
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

JOB_TYPES = {"scheduler": "SchedulerJob", "dag-processor": "DagProcessorJob", "triggerer": "TriggererJob"}
# Airflow's own threshold for a scheduler to count as healthy.
HEARTBEAT_STALE_AFTER = 30.0


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def libpq_dsn(sqlalchemy_url: str) -> str:
    scheme, rest = sqlalchemy_url.split("://", 1)
    return "postgresql://" + rest


def db_connect(spec: Spec, secrets: Secrets, timeout: int = 3):
    return psycopg2.connect(libpq_dsn(database_url(spec, secrets)), connect_timeout=timeout)


def job_heartbeats(spec: Spec, secrets: Secrets) -> dict[tuple[str, str], tuple[str, float]]:
    """(hostname, job_type) -> (state, seconds since the newest job row's heartbeat)."""
    with db_connect(spec, secrets) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT ON (hostname, job_type) hostname, job_type, state, "
            "EXTRACT(EPOCH FROM (now() - latest_heartbeat)) FROM job "
            "ORDER BY hostname, job_type, latest_heartbeat DESC"
        )
        rows = cur.fetchall()
    conn.close()
    return {(h, t): (s, float(age)) for h, t, s, age in rows}


def job_health(beats: dict, component: str, kind: str) -> Health:
    key = (component_hostname(component), JOB_TYPES[kind])
    if key not in beats:
        return Health(False, "no heartbeat yet")
    state, age = beats[key]
    if state != "running":
        return Health(False, f"job {state}")
    if age > HEARTBEAT_STALE_AFTER:
        return Health(False, f"heartbeat stale ({age:.0f}s)")
    return Health(True, f"heartbeat {age:.0f}s ago")


def api_health(spec: Spec, url: str | None = None) -> Health:
    """The health an api-server reports at `url` (default: the cluster's api URL)."""
    try:
        r = httpx.get(f"{url or api_url(spec)}{api_servers.HEALTH_PATH}", timeout=3)
        body = r.json()
    except (httpx.HTTPError, ValueError) as e:
        return Health(False, f"no answer ({e.__class__.__name__})")
    db = body.get("metadatabase", {}).get("status")
    return Health(db == "healthy", f"metadatabase {db}")


def api_proxy_states(spec: Spec) -> dict[str, str] | None:
    """HAProxy's status of each api-server instance; None when its statistics do not answer."""
    try:
        r = httpx.get(f"{api_servers.stats_url(spec)}/stats;csv", timeout=2)
        r.raise_for_status()
    except httpx.HTTPError:
        return None
    return api_servers.server_states(r.text)


def api_server_health(spec: Spec, name: str, proxy_states: dict[str, str] | None) -> Health:
    """An api-server instance: its own answer, and behind HAProxy whether HAProxy sends it requests."""
    own = api_health(spec, api_servers.instance_url(spec, name))
    if not api_servers.redundant(spec):
        return own
    state = None if proxy_states is None else proxy_states.get(name, "not configured")
    return Health(*api_servers.instance_health(own.ok, own.detail, state))


def api_proxy_health(spec: Spec, proxy_states: dict[str, str] | None) -> Health:
    """HAProxy in front of the instances: the api port answers, and some instance is in rotation."""
    if proxy_states is None:
        return Health(False, "statistics do not answer")
    try:
        httpx.get(f"{api_url(spec)}{api_servers.HEALTH_PATH}", timeout=3)
        answers = True
    except httpx.HTTPError:
        answers = False
    return Health(*api_servers.proxy_health(proxy_states, answers))


def worker_pings(spec: Spec, secrets: Secrets, timeout: float = 1.0) -> set[str]:
    """Names of the workers that answered a Celery ping (`worker-default-1`)."""
    app = broker.celery_app(spec, secrets)
    try:
        replies = app.control.ping(timeout=timeout)
    except Exception:  # broker down: no worker can answer
        return set()
    finally:
        app.close()
    return {node.split("@", 1)[0] for reply in replies for node in reply}


def postgres_health(spec: Spec, secrets: Secrets) -> Health:
    """A login through the database endpoint; with ha.database, also whether it reached a
    primary: while none is, HAProxy sends connections to the standby, which answers reads only."""
    from airscale.runtime.postgres import superuser_connect

    try:
        conn = superuser_connect(spec, secrets)
        try:
            if not spec.ha.database.enabled:
                return Health(True, "accepting connections")
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                if cur.fetchone()[0]:
                    return Health(False, "read-only: no primary, the standby answers reads (failover under way?)")
            return Health(True, "accepting connections (primary)")
        finally:
            conn.close()
    except psycopg2.Error as e:
        return Health(False, str(e).strip().splitlines()[0][:80])


def redis_health(spec: Spec, secrets: Secrets, name: str = "redis") -> Health:
    """A login to that Redis node; with ha.broker also its role, and a replica is healthy only
    once it replicates (link up to the primary)."""
    sentinel = broker.sentinel_on(spec)
    client = (broker.node_client(spec, secrets, broker.node_index(name)) if sentinel
              else redis_client.Redis.from_url(broker.celery_url(spec, secrets), socket_timeout=2))
    try:
        if not sentinel:
            client.ping()
            return Health(True, "PONG")
        return Health(*replica_health(spec, client.info("replication")))
    except redis_client.RedisError as e:
        return Health(False, str(e)[:80])
    finally:
        client.close()


def replica_health(spec: Spec, info: dict) -> tuple[bool, str]:
    """(healthy, detail) of a Redis node from its INFO replication (pure)."""
    if info.get("role") == "master":
        return True, f"primary, {info.get('connected_slaves', 0)} replica(s)"
    link = info.get("master_link_status")
    of = broker.node_at(spec, int(info.get("master_port", 0))) or f"port {info.get('master_port')}"
    return link == "up", f"replica of {of}, link {link}"


def age(ts: float) -> str:
    s = int(time.time() - ts)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
