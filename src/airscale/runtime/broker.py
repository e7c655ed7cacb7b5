"""Where the broker is: the one place that knows how to reach the Redis primary.

Without `ha.broker` the broker is one Redis at `Ports.redis` (or `broker.url`). With it, two
Redis nodes (`redis` at `Ports.redis`, `redis-2`) take turns as primary, and three Sentinels
(`Ports.sentinel(1..3)`) know which one it is now; any client that remembers an address goes
stale at the first failover. So every user of the broker asks here:

- Airflow and Celery (workers, schedulers, the result backend): `celery_url` and
  `transport_options`, a `sentinel://` URL per Sentinel and the `master_name` kombu's
  SentinelChannel and Celery's SentinelBackend need (kombu/transport/redis.py, "You must provide
  at least one option in Transport options: master_name"). They look the primary up at every
  (re)connection.
- airscale's own clients (health, Celery pings, the reclaimer, the autoscaler and its wake-up):
  `celery_app`, `kombu_connection` and `client`, built on the same URL and options; `client` is
  a redis-py client whose connections find the primary through the Sentinels
  (redis.sentinel.Sentinel.master_for), so a long-lived one follows a failover by itself.
- Probes that must name an address (the restart listener's broker dependency, liveness, the
  exporter): `primary`, one round of `SENTINEL get-master-addr-by-name` over the Sentinels.

The Sentinels demand the broker password too (`requirepass`): they can fail the broker over and
rewrite its configuration, so they are no less to protect than Redis (listen_host may be a LAN
address). redis-py does not pass the master's password to the Sentinels: `sentinel_kwargs`
carries it (Airflow's celery provider parses that option as JSON in
[celery_broker_transport_options] and [celery_result_backend_transport_options]).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

# The Sentinels' name of the monitored primary (`sentinel monitor NAME ...`).
MASTER_NAME = "airscale"
NODES = (1, 2)
SENTINELS = (1, 2, 3)
# A client stuck on a hung primary (SIGSTOP: the kernel still accepts, nothing answers) gives up
# after this long and reconnects, through the Sentinels, to whichever node is primary by then.
# Above kombu's BRPOP timeout (1 s), so an idle worker's poll never times out.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 3.0
# Beyond ha.broker.down_after: the Sentinels' vote, the promotion and their seeing the new role
# (~2 s measured here), with room for a loaded host.
FAILOVER_MARGIN_S = 5.0


def sentinel_on(spec: Spec) -> bool:
    """Redis primary + replica under Sentinel (`ha.broker`, embedded broker, profile scale)."""
    return spec.uses_celery and spec.broker.url is None and spec.ha.broker.enabled


def restart_delay(spec: Spec) -> float:
    """Least seconds before a dead Redis node is started again (Component.restart_delay): with
    ha.broker, until the Sentinels have promoted the other node (airscale.ha.broker)."""
    return spec.ha.broker.down_after + FAILOVER_MARGIN_S if sentinel_on(spec) else 0.0


def node_name(i: int) -> str:
    """Node 1 keeps the name the single Redis always had."""
    return "redis" if i == 1 else f"redis-{i}"


def node_index(name: str) -> int:
    return 1 if name == "redis" else int(name.rsplit("-", 1)[1])


def sentinel_name(i: int) -> str:
    return f"sentinel-{i}"


def node_urls(spec: Spec) -> list[str]:
    """Each Redis node as `redis://host:port` (no password), as redis_exporter names targets."""
    return [f"redis://{spec.client_host}:{spec.ports.redis_node(i)}" for i in NODES]


def sentinel_addresses(spec: Spec) -> list[tuple[str, int]]:
    return [(spec.client_host, spec.ports.sentinel(i)) for i in SENTINELS]


def _pw(secrets: Secrets) -> str:
    return quote(secrets.redis_password, safe="")


def celery_url(spec: Spec, secrets: Secrets) -> str:
    """The broker URL Airflow and Celery use (also the result backend's, with ha.broker)."""
    if spec.broker.url:
        return spec.broker.url
    if sentinel_on(spec):
        # kombu reads the first URL's password for the primary and collects every `sentinel://`
        # of the `;`-separated list as the Sentinels to ask (SentinelChannel._sentinel_managed_pool).
        return ";".join(f"sentinel://:{_pw(secrets)}@{h}:{p}/0" for h, p in sentinel_addresses(spec))
    return f"redis://:{_pw(secrets)}@{spec.client_host}:{spec.ports.redis}/0"


def transport_options(spec: Spec, secrets: Secrets) -> dict[str, Any]:
    """kombu's (and Celery's result backend's) options for the Sentinel URL; {} without it."""
    if not sentinel_on(spec):
        return {}
    return {
        "master_name": MASTER_NAME,
        "sentinel_kwargs": {"password": secrets.redis_password, "socket_timeout": CONNECT_TIMEOUT},
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }


def airflow_transport_options(spec: Spec, secrets: Secrets) -> dict[str, Any]:
    """`transport_options` as airflow.cfg values: the provider json.loads `sentinel_kwargs`."""
    return {k: json.dumps(v) if isinstance(v, dict) else v for k, v in transport_options(spec, secrets).items()}


def celery_app(spec: Spec, secrets: Secrets):
    """A Celery app on the cluster's broker (control: ping, inspect)."""
    from celery import Celery

    app = Celery(broker=celery_url(spec, secrets))
    app.conf.broker_transport_options = transport_options(spec, secrets)
    return app


def kombu_connection(spec: Spec, secrets: Secrets):
    from kombu import Connection

    return Connection(celery_url(spec, secrets), transport_options=transport_options(spec, secrets))


def client(spec: Spec, secrets: Secrets, socket_timeout: float = 3.0):
    """A redis-py client of the primary; with ha.broker each new connection asks the Sentinels."""
    import redis

    if not sentinel_on(spec):
        return redis.Redis.from_url(celery_url(spec, secrets), socket_timeout=socket_timeout)
    from redis.sentinel import Sentinel

    opts = transport_options(spec, secrets)
    sentinels = Sentinel(sentinel_addresses(spec), sentinel_kwargs=opts["sentinel_kwargs"],
                         socket_timeout=socket_timeout, socket_connect_timeout=CONNECT_TIMEOUT)
    return sentinels.master_for(MASTER_NAME, password=secrets.redis_password, socket_timeout=socket_timeout)


def node_client(spec: Spec, secrets: Secrets, i: int, socket_timeout: float = 2.0):
    """A redis-py client of node `i` itself, primary or not (its health, its role)."""
    import redis

    return redis.Redis(host=spec.client_host, port=spec.ports.redis_node(i), password=secrets.redis_password,
                       socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, retry=_no_retry())


def _no_retry():
    """One try: redis-py 6+ retries a refused connection 3 times with backoff (4 s per address
    measured), which a probe or a health check must not wait for."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def sentinel_client(spec: Spec, secrets: Secrets, i: int, timeout: float = 2.0):
    """A redis-py client of Sentinel `i` (SENTINEL commands), one try per call."""
    import redis

    return redis.Redis(host=spec.client_host, port=spec.ports.sentinel(i), password=secrets.redis_password,
                       socket_timeout=timeout, socket_connect_timeout=timeout, retry=_no_retry())


def roles(spec: Spec, secrets: Secrets) -> dict[str, str | None]:
    """Each node's own word on its role (`master`, `slave`; None: no answer)."""
    import redis

    out: dict[str, str | None] = {}
    for i in NODES:
        c = node_client(spec, secrets, i)
        try:
            out[node_name(i)] = c.info("replication").get("role")
        except redis.RedisError:
            out[node_name(i)] = None
        finally:
            c.close()
    return out


def ask_sentinels(addresses: list[tuple[str, int]], password: str | None,
                  timeout: float = CONNECT_TIMEOUT) -> tuple[str, int] | None:
    """The primary's address as the first Sentinel that answers names it; None: none answers
    (or none knows it). Also the restart listener's probe: it takes no spec."""
    import redis

    for host, port in addresses:
        try:
            s = redis.Redis(host=host, port=port, password=password, socket_timeout=timeout,
                            socket_connect_timeout=timeout, retry=_no_retry())
            try:
                addr = s.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
            finally:
                s.close()
        except redis.RedisError:
            continue
        if addr:
            h, p = (x.decode() if isinstance(x, bytes) else x for x in addr)
            return h, int(p)
    return None


def primary(spec: Spec, secrets: Secrets) -> tuple[str, int] | None:
    """The address of the broker's primary now: with ha.broker what the Sentinels say (None:
    no Sentinel answers), else the one Redis."""
    if not sentinel_on(spec):
        return spec.client_host, spec.ports.redis
    return ask_sentinels(sentinel_addresses(spec), secrets.redis_password)


def primary_node(spec: Spec, secrets: Secrets) -> str | None:
    """The component name (`redis`, `redis-2`) of the primary now, None if unknown."""
    addr = primary(spec, secrets)
    return node_at(spec, addr[1]) if addr else None


def node_at(spec: Spec, port: int) -> str | None:
    return next((node_name(i) for i in NODES if spec.ports.redis_node(i) == port), None)
