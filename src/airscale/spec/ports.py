"""Every port of a cluster, derived from `cluster.base_port`.

A cluster owns the block [base_port, base_port + 100). Offsets are fixed so that a port can be
found from the spec alone, and two clusters with blocks 100 apart never collide.

Offsets: 0-12 the core and monitoring (below, in order); 50-89 the worker log servers;
13-16 `ha.broker`: 13 the second Redis node, 14-16 Sentinels 1-3. 90-99 `ha.database`: 90/91 client/peer of etcd member 1, 92/93 PostgreSQL of nodes 1/2, 94/95
their Patroni REST APIs, 96/97 and 98/99 client/peer of etcd members 2 and 3. Member 1 keeps
90/91, the ports of the single etcd member before the DCS had three, so a Patroni that is still
running from then finds the new members through it (`airscale.ha.database`). 40-48
`api_server.count` >= 2: 40 HAProxy's statistics and Prometheus metrics, 41-48 the api-server
instances 1-8 (the api port 0 is then HAProxy). 17-39 and 49 are free.
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCK_SIZE = 100
# The PostgreSQL nodes of ha.database (a primary and a standby), by index: `pg_node(i)`.
HA_DATABASE_NODES = (1, 2)
# Client port offset of each etcd member; its peer port is the next one.
_ETCD_CLIENT_OFFSETS = {1: 90, 2: 96, 3: 98}


@dataclass(frozen=True)
class Ports:
    base: int

    @property
    def api(self) -> int:
        return self.base

    @property
    def postgres(self) -> int:
        return self.base + 1

    @property
    def redis(self) -> int:
        return self.base + 2

    @property
    def prometheus(self) -> int:
        return self.base + 3

    @property
    def alertmanager(self) -> int:
        return self.base + 4

    @property
    def exporter(self) -> int:
        return self.base + 5

    @property
    def statsd(self) -> int:
        return self.base + 6

    @property
    def grafana(self) -> int:
        return self.base + 7

    @property
    def postgres_exporter(self) -> int:
        return self.base + 8

    @property
    def redis_exporter(self) -> int:
        return self.base + 9

    @property
    def alert_receiver(self) -> int:
        return self.base + 10

    @property
    def autoscaler_metrics(self) -> int:
        """Prometheus metrics of the autoscaler (desired and actual workers, decisions, drains)."""
        return self.base + 11

    @property
    def pgbouncer(self) -> int:
        """PgBouncer (database.pgbouncer), where Airflow connects when pooling is on."""
        return self.base + 12

    # -- api_server.count >= 2 (offsets 40-48): `api` above is HAProxy, the public address.
    def api_instance(self, index: int) -> int:
        """api-server instance `index` (1-8) behind HAProxy: 41-48."""
        if not 1 <= index <= 8:
            raise ValueError(f"api-server instance {index} is not in 1-8")
        return self.base + 40 + index

    @property
    def api_proxy_stats(self) -> int:
        """HAProxy's statistics page (/stats) and Prometheus metrics (/metrics), loopback only."""
        return self.base + 40

    # -- ha.broker (offsets 13-16): node 1 is `redis` above, so a cluster that turns ha.broker on
    # keeps its Redis, its data and its port.
    def redis_node(self, index: int) -> int:
        """Redis node `index` (1 or 2) of ha.broker: 2, 13."""
        return self.redis if index == 1 else self.base + 13

    def sentinel(self, index: int) -> int:
        """Redis Sentinel `index` (1, 2 or 3): 14, 15, 16."""
        return self.base + 13 + index

    # -- ha.database (offsets 90-99; 50-89 are the worker log servers): with it, `postgres`
    # above is HAProxy, routing to the primary; the PostgreSQL nodes have their own ports.
    def etcd_client(self, member: int) -> int:
        """Client URL port of etcd member `member` (1, 2 or 3): 90, 96, 98."""
        return self.base + _ETCD_CLIENT_OFFSETS[member]

    def etcd_peer(self, member: int) -> int:
        """Peer (raft) port of etcd member `member` (1, 2 or 3): 91, 97, 99."""
        return self.etcd_client(member) + 1

    def pg_node(self, index: int) -> int:
        """PostgreSQL of HA node `index` (1 or 2)."""
        return self.base + 91 + index

    def patroni_api(self, index: int) -> int:
        """Patroni REST API of HA node `index` (1 or 2): /primary, /replica, /cluster."""
        return self.base + 93 + index

    def worker_log_server(self, index: int) -> int:
        """Log server of a worker that serves its logs (remote hosts only); index from 0."""
        return self.base + 50 + index
