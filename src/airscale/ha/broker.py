"""Redis primary + replica with Sentinel failover (spec `ha.broker.enabled`).

Design, and why:
- Two Redis nodes, each with AOF (`appendfsync everysec`) in its own folder: `redis` (the
  runtime's, primary at the first start, on the port the single Redis always had, so a cluster
  that turns ha.broker on keeps its queue) and `redis-2`, its replica (`replicaof`,
  `masterauth`). Replication is asynchronous: a write the primary acknowledged in its last
  moments before a crash may not have reached the replica. Celery's messages are protected
  from that by what already covers a lost message (acks late, the reclaimer re-sending a task
  queued with no message anywhere).
- Three Sentinels (`sentinel-1..3`, `redis-server FILE --sentinel`, quorum 2) watch the primary;
  after `ha.broker.down_after` seconds without an answer (dead or hung: SIGSTOP is the same to
  them) they promote the replica and repoint the other node when it answers again. One dead or
  hung Sentinel leaves two: still a quorum and a majority to authorise the failover.
- Nobody remembers an address: Airflow, Celery and airscale's clients ask the Sentinels
  (`airscale.runtime.broker`). A client stuck on a hung primary gives up after
  `broker.SOCKET_TIMEOUT` and reconnects to the new one.
- A killed node is restarted by the restart listener, but not before `restart_delay`
  (down_after + margin): the killed primary then comes back after the failover, as a primary
  the Sentinels at once turn into a replica of the new one (`+convert-to-slave`), instead of
  coming back before they noticed, as the primary, with the last second of writes its AOF had
  not synced yet and the replica had (which a full resync from it would also erase).
- A hung old primary that resumes after a failover still takes writes from clients that were
  stuck on it until the Sentinels demote it (a few seconds); those clients timed out and retried
  on the new primary, so such writes are duplicates that the resync discards. `min-replicas-to-
  write` would refuse them, at the price of refusing every write while the replica is down: a
  replica failure would stop the broker, so it is not set.

The Sentinels rewrite their own files and the nodes' (`airscale.runtime.redis`); `up` renders
them again with the primary the Sentinels name, so it never undoes a failover.
"""

from __future__ import annotations

import shutil
from airscale.errors import AirscaleError
from airscale.runtime import broker, redis
from airscale.runtime.component import Component
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec

SENTINEL_KIND = "sentinel"


def components(spec: Spec, layout: Layout) -> list[Component]:
    """`redis-2` and the Sentinels (the runtime adds `redis`), all in the broker's stage."""
    out = [Component(broker.node_name(i), "redis", ("redis-server", str(redis.node_conf(layout, i))),
                     stage=1, restart_delay=broker.restart_delay(spec))
           for i in broker.NODES if i != 1]
    out += [Component(broker.sentinel_name(i), SENTINEL_KIND,
                      ("redis-server", str(redis.sentinel_conf(layout, i)), "--sentinel"), stage=1)
            for i in broker.SENTINELS]
    return out


def ports(spec: Spec) -> dict[str, int]:
    out = {broker.node_name(i): spec.ports.redis_node(i) for i in broker.NODES if i != 1}
    out.update({broker.sentinel_name(i): spec.ports.sentinel(i) for i in broker.SENTINELS})
    return out


def check_installed() -> None:
    # Debian's redis-server runs as a Sentinel with --sentinel (redis-sentinel is the same binary).
    if shutil.which("redis-server") is None:
        raise AirscaleError("ha.broker.enabled needs redis-server, which is not installed",
                            "apt-get install redis-server, or set ha.broker.enabled: false")


def write_configs(spec: Spec, layout: Layout, secrets: Secrets) -> None:
    check_installed()
    redis.write_node_configs(spec, layout, secrets, tuple(i for i in broker.NODES if i != 1))
    redis.write_sentinel_configs(spec, layout, secrets)


def sentinel_health(spec: Spec, secrets: Secrets, name: str) -> tuple[bool, str]:
    """A Sentinel is healthy when it names a primary and sees the other Sentinels."""
    i = int(name.rsplit("-", 1)[1])
    import redis as redis_client

    try:
        s = broker.sentinel_client(spec, secrets, i)
        try:
            info = s.execute_command("SENTINEL", "MASTER", broker.MASTER_NAME)
        finally:
            s.close()
    except redis_client.RedisError as e:
        return False, str(e)[:80]
    master = {_text(k): _text(v) for k, v in (zip(info[::2], info[1::2]) if isinstance(info, list) else info.items())}
    node = broker.node_at(spec, int(master.get("port", 0)))
    others = int(master.get("num-other-sentinels", 0))
    flags = master.get("flags", "")
    ok = "down" not in flags and others >= len(broker.SENTINELS) - 1
    return ok, f"primary {node} ({flags}), sees {others} other sentinel(s)"


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
