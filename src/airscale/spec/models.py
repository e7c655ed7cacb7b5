"""The `airscale.yaml` spec: the single source of truth for a cluster.

Every model forbids unknown fields, so a typo is an error that names the field rather than a
setting silently ignored. Every field carries a description: `airscale init` prints them as
comments, and error messages point back at the field path (`queues.default.max_workers`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airscale.spec.auth import AuthSpec
from airscale.spec.autoscaling import AutoscalingSpec
from airscale.spec.backup import BackupSpec
from airscale.spec.ha import HASpec
from airscale.spec.kubernetes import KubernetesSpec
from airscale.spec.monitoring import MonitoringSpec
from airscale.spec.ports import Ports
from airscale.spec.tuning import TuningSpec
from airscale.spec.types import ConfigName, ConfigValue, HostName, PostgresUrl, RedisUrl, SafePath

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Profile(str, Enum):
    scale = "scale"
    dev = "dev"


class ClusterSpec(_Model):
    name: str = Field(
        "airscale",
        pattern=NAME_PATTERN,
        description="Cluster name: lower case letters, digits and '-'. Names processes and data.",
    )
    data_dir: SafePath = Field(
        Path(".airscale/airscale"),
        description="Where the cluster keeps its database, broker data, logs and secrets "
        "(relative paths are relative to this spec file).",
    )
    base_port: int = Field(
        28080,
        ge=1024,
        le=65000,
        description="First port of the cluster's block of ports; every port is derived from it "
        "(api-server = base_port). Give each cluster its own block, 100 apart.",
    )
    listen_host: HostName = Field(
        "127.0.0.1",
        description="Address every component listens on. Keep 127.0.0.1 unless remote workers "
        "must reach the broker and database.",
    )
    profile: Profile = Field(
        Profile.scale,
        description="'scale': CeleryExecutor with Redis and Celery workers per queue; "
        "'dev': LocalExecutor, no broker and no workers.",
    )


class SchedulerSpec(_Model):
    count: int = Field(2, ge=1, le=8, description="Number of active schedulers (all schedule).")


class ApiServerSpec(_Model):
    count: int | None = Field(
        None,
        ge=1,
        le=8,
        description="api-server processes (UI, REST API and the Execution API every task reports "
        "to). Two or more run on ports of their own behind HAProxy on the api port, which checks "
        "each one's health, so one of them can die or restart while the others answer. Empty: 2 "
        "with profile 'scale', 1 with 'dev'. Each costs a few hundred MiB of memory.",
    )


class QueueSpec(_Model):
    min_workers: int = Field(1, ge=0, le=64, description="Workers always running for this queue.")
    max_workers: int = Field(2, ge=1, le=64, description="Most workers this queue may have.")
    concurrency: int = Field(8, ge=1, le=256, description="Task slots per Celery worker.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> QueueSpec:
        if self.min_workers > self.max_workers:
            raise ValueError(
                f"min_workers ({self.min_workers}) is greater than max_workers "
                f"({self.max_workers}); lower min_workers or raise max_workers"
            )
        return self


class DatabaseSpec(_Model):
    url: PostgresUrl | None = Field(
        None,
        description="External PostgreSQL SQLAlchemy URL (postgresql+psycopg2://...). "
        "Leave empty for an embedded PostgreSQL under data_dir.",
    )
    postgres_bin_dir: SafePath | None = Field(
        None,
        description="Folder with initdb, pg_ctl and postgres for the embedded database; "
        "empty: /usr/lib/postgresql/15/bin or the one pg_config reports.",
    )
    max_connections: int = Field(
        200, ge=20, le=10000, description="max_connections of the embedded PostgreSQL."
    )
    pgbouncer: bool | None = Field(
        None,
        description="Pool Airflow's database connections through PgBouncer (transaction pooling, "
        "pool sizes from the tuning plan) in front of the embedded PostgreSQL. Empty: on with "
        "ha.database, off otherwise. Needs the Debian package pgbouncer.",
    )

    @model_validator(mode="after")
    def _pgbouncer_embedded_only(self) -> DatabaseSpec:
        if self.url is not None and self.pgbouncer:
            raise ValueError("pgbouncer: true works with the embedded PostgreSQL only; with database.url, "
                             "point the URL at your own PgBouncer and leave pgbouncer empty")
        return self


class BrokerSpec(_Model):
    url: RedisUrl | None = Field(
        None,
        description="External Redis URL (redis://:password@host:6379/0). "
        "Leave empty for an embedded Redis with AOF persistence under data_dir.",
    )
    result_backend: Literal["redis", "database"] = Field(
        "redis",
        description="Where Celery workers store each task's result, which the scheduler polls: "
        "'redis' (the broker's Redis: one round trip per poll; measured 10-20 % faster short "
        "tasks than 'database') or 'database' (Airflow's default, the metadata database: a new "
        "PostgreSQL connection for every poll of the scheduler). Airflow logs a warning that it "
        "recommends a database; airscale keeps results safe in Redis with AOF persistence and "
        "workers that retry storing a result until Redis is back.",
    )


class WorkersSpec(_Model):
    drain_timeout: int = Field(
        600,
        ge=5,
        le=86400,
        description="Seconds a stopping worker may take to finish its running tasks "
        "before it is stopped hard.",
    )
    warm_start: bool = Field(
        True,
        description="Fork workers from a process that has Airflow imported already "
        "(component worker-forkserver): a worker answers about 1 s sooner. Off: every worker "
        "starts a fresh Python.",
    )


# Airflow pool names as `airflow pools set` takes them, without spaces or quotes to escape.
POOL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,255}$"

# Section -> key -> scalar: every name and value is one that cannot break airflow.cfg (spec.types).
AirflowOverrides = dict[ConfigName, Annotated[dict[ConfigName, ConfigValue], Field(max_length=500)]]


class Spec(_Model):
    """A whole cluster."""

    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="Identity, data and ports.")
    schedulers: SchedulerSpec = Field(default_factory=SchedulerSpec, description="Schedulers.")
    queues: dict[Annotated[str, Field(pattern=NAME_PATTERN)], QueueSpec] = Field(
        default_factory=lambda: {"default": QueueSpec()},
        max_length=64,
        description="Celery queues, each with its own workers (profile 'scale').",
    )
    workers: WorkersSpec = Field(default_factory=WorkersSpec, description="Celery worker behaviour.")
    api_server: ApiServerSpec = Field(
        default_factory=ApiServerSpec,
        description="The api-server: how many, behind HAProxy when more than one.",
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec,
        description="Celery workers per queue follow the load (bounds from queues.<name>).",
    )
    kubernetes: KubernetesSpec = Field(
        default_factory=KubernetesSpec,
        description="Rendering for Kubernetes (`airscale render k8s`): namespace, images, resources, "
        "Secret names. Not used by the local cluster.",
    )
    dags_folder: SafePath = Field(
        Path("dags"), description="Folder of DAG files (relative to this spec file)."
    )
    database: DatabaseSpec = Field(default_factory=DatabaseSpec, description="Metadata database.")
    broker: BrokerSpec = Field(default_factory=BrokerSpec, description="Celery broker.")
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="Prometheus, Alertmanager, exporters, alert thresholds and receivers.",
    )
    airflow_config: AirflowOverrides = Field(
        default_factory=dict,
        max_length=100,
        description="Airflow settings by section and key; they win over what airscale derives "
        "(e.g. {scheduler: {parsing_processes: 2}}).",
    )
    pools: dict[Annotated[str, Field(pattern=POOL_NAME_PATTERN)], Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=dict,
        max_length=200,
        description="Airflow pools and their slots, kept in the metadata database by `airscale up` "
        "(created or resized; one removed from here is deleted once no unfinished task uses it). "
        "default_pool here wins over the size the tuning plan gives it.",
    )
    tuning: TuningSpec = Field(
        default_factory=TuningSpec,
        description="Settings planned from a workload profile (`airscale plan`); airflow_config wins.",
    )
    auth: AuthSpec = Field(
        default_factory=AuthSpec,
        description="Who may log in: the auth manager and the people with their roles "
        "(`airscale users`, `airscale audit`).",
    )
    backup: BackupSpec = Field(
        default_factory=BackupSpec,
        description="Scheduled backups (`airscale backup`): how often, how many to keep, where.",
    )
    ha: HASpec = Field(
        default_factory=HASpec,
        description="Recovery from crashes: task heartbeat timeout, retries, Celery redelivery, "
        "and the PostgreSQL primary + standby (`airscale drill` measures it).",
    )

    # Set by the loader: the folder relative paths are resolved against.
    base_dir: Path = Field(Path("."), exclude=True, description="internal")
    # Set by the loader: the spec file itself, so processes started for the cluster (the
    # autoscaler) can load the same spec.
    spec_file: Path | None = Field(None, exclude=True, description="internal")

    @model_validator(mode="after")
    def _ha_broker_embedded_only(self) -> Spec:
        # Sentinel watches the Redis nodes airscale runs; an external Redis has its own HA story.
        if self.ha.broker.enabled and self.broker.url is not None:
            raise ValueError("ha.broker.enabled: true works with the embedded Redis only; remove broker.url "
                             "or set ha.broker.enabled: false (give your own Redis its Sentinels)")
        return self

    @field_validator("queues")
    @classmethod
    def _at_least_one_queue(cls, v: dict[str, QueueSpec]) -> dict[str, QueueSpec]:
        if not v:
            raise ValueError("define at least one queue, e.g. queues: {default: {max_workers: 2}}")
        return v

    @model_validator(mode="after")
    def _no_silent_choice(self) -> Spec:
        # Settings that cannot both hold: one would be silently ignored, so neither wins.
        if self.ha.database.enabled and self.database.url is not None:
            raise ValueError(
                "ha.database.enabled runs the embedded PostgreSQL as a primary + standby, but "
                "database.url points at an external database; remove database.url or set "
                "ha.database.enabled: false"
            )
        if self.cluster.profile is Profile.dev:
            if self.autoscaling.enabled is True:
                raise ValueError("autoscaling.enabled needs Celery workers, which profile 'dev' has none of; "
                                 "set cluster.profile: scale or autoscaling.enabled: false")
            if self.broker.url is not None:
                raise ValueError("broker.url is set, but profile 'dev' runs no broker; "
                                 "set cluster.profile: scale or remove broker.url")
        return self

    @model_validator(mode="after")
    def _autoscaled_by_default(self) -> Spec:
        # Defaults are the product: a queue given room to grow is autoscaled unless the spec
        # says otherwise. Resolved once here, so every reader sees a plain bool.
        if self.autoscaling.enabled is None:
            self.autoscaling.enabled = self.uses_celery and any(
                q.max_workers > q.min_workers for q in self.queues.values())
        return self

    @model_validator(mode="after")
    def _api_servers_by_profile(self) -> Spec:
        # Redundant where tasks report to it (Celery workers call the Execution API for every
        # start, heartbeat and finish); one process for a laptop. Resolved once here.
        if self.api_server.count is None:
            self.api_server.count = 2 if self.uses_celery else 1
        return self

    # -- derived paths -------------------------------------------------------------------
    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def data_path(self) -> Path:
        return self.resolve(self.cluster.data_dir)

    @property
    def backup_path(self) -> Path:
        """The folder of the cluster's backup archives."""
        return self.backup.folder(self.data_path, self.resolve)

    @property
    def dags_path(self) -> Path:
        return self.resolve(self.dags_folder)

    @property
    def uses_celery(self) -> bool:
        return self.cluster.profile is Profile.scale

    # -- derived addresses: computed here once, read by every consumer -------------------
    @property
    def ports(self) -> Ports:
        """Every port of the cluster's block (`cluster.base_port`)."""
        return Ports(self.cluster.base_port)

    @property
    def client_host(self) -> str:
        """Where local clients connect: the listen address, or loopback when it listens on all
        interfaces (a client cannot connect to 0.0.0.0 portably)."""
        return client_host_for(self.cluster.listen_host)

    def worker_names(self, queue: str) -> list[str]:
        """The supervised workers of `queue`, `worker-QUEUE-1` .. `worker-QUEUE-max_workers`."""
        return [worker_name(queue, i) for i in range(1, self.queues[queue].max_workers + 1)]


def client_host_for(listen_host: str) -> str:
    return "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host


def worker_name(queue: str, index: int) -> str:
    """A supervised worker's component name; also its Celery node name's first part."""
    return f"worker-{queue}-{index}"
