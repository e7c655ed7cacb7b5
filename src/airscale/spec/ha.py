"""The spec's `ha` section: how the cluster recovers when one of its parts dies.

Stock Airflow with Celery and Redis recovers badly from a crash (measured here, Airflow
3.3.2): a worker killed with kill -9 leaves its tasks "running" for 300 s, then they fail with
no retry and the DAG run fails; the worker's unacknowledged messages wait 86400 s in Redis; a
killed scheduler's job row stays "running". The fields below are the settings that fix each of
these; `runtime/airflow_config.py` turns them into airflow.cfg and says why for each.
`airscale drill` measures the result (RELIABILITY.md).

`ha.database` describes the PostgreSQL high-availability pair (Patroni + three etcd members +
HAProxy); `ha.broker` the Redis pair (primary + replica, three Sentinels). They are independent:
each removes one single point of failure and costs its own processes, so neither implies the
other (the `ha` examples turn both on).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


# Patroni's retry_timeout (etcd and PostgreSQL operations): etcd is local, so 7 s is ample, and
# it lets ttl go down to loop_wait + 14 s. Patroni's etcd3 client gives each of the three etcd
# members retry_timeout / 3 = 2.3 s per request before it tries the next
# (patroni/dcs/etcd.py `_calculate_timeouts`), so a hung member (it accepts connections but
# never answers) costs 2.3 s and a write still gets two more tries within the 7 s. With the
# whole DCS unreachable, failsafe mode keeps the primary if its loop (retry_timeout, then a
# POST /failsafe to the standby of at most 2 x 2 s, then loop_wait) ends within ttl: the ttl
# rule below (loop_wait + 2 x retry_timeout) leaves a margin of 3 s or more.
PATRONI_RETRY_TIMEOUT = 7


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class HADatabaseSpec(_Model):
    enabled: bool = Field(
        False,
        description="Run the embedded PostgreSQL as a Patroni-managed primary plus hot standby "
        "(streaming replication, automatic failover, etcd as the consensus store) with Airflow "
        "connecting through HAProxy, which routes only to the node Patroni's REST /primary check "
        "confirms. Needs the Debian packages etcd-server, patroni and haproxy.",
    )
    ttl: int = Field(
        20,
        ge=10,
        le=300,
        description="Seconds the primary's leader key lives in etcd without renewal: a crashed "
        "primary node is replaced after about this long (Patroni ttl). Measured here: the next task "
        "finished 32.6 s after a frozen primary with 30, 30.3 s with 25. Lower fails over sooner "
        "but mistakes a primary stalled that long (I/O, swap) for a dead one.",
    )
    loop_wait: int = Field(
        5,
        ge=1,
        le=60,
        description="Seconds between Patroni's checks of its PostgreSQL (Patroni loop_wait); "
        f"ttl must be at least loop_wait + 2 * retry_timeout ({PATRONI_RETRY_TIMEOUT} s).",
    )

    @model_validator(mode="after")
    def _ttl_covers_loop(self) -> HADatabaseSpec:
        # Patroni's own rule: a leader key that can expire between two loops flaps the leader.
        if self.ttl < self.loop_wait + 2 * PATRONI_RETRY_TIMEOUT:
            raise ValueError(
                f"ttl ({self.ttl}) must be at least loop_wait ({self.loop_wait}) + "
                f"{2 * PATRONI_RETRY_TIMEOUT} s; raise ttl or lower loop_wait"
            )
        return self


class HABrokerSpec(_Model):
    enabled: bool = Field(
        False,
        description="Run the embedded Redis as a primary plus a replica, both with AOF, watched by "
        "three Redis Sentinels that promote the replica when the primary dies or hangs; Airflow, "
        "Celery and airscale's own clients find the primary through the Sentinels. Embedded broker "
        "only (not with broker.url), profile 'scale'.",
    )
    down_after: int = Field(
        5,
        ge=1,
        le=60,
        description="Seconds the primary may not answer before the Sentinels count it as down and "
        "fail over (Sentinel down-after-milliseconds). A failover follows about 2 s later. Lower "
        "fails over sooner but mistakes a stall that long (a fork for an AOF rewrite on a slow "
        "disk) for a death.",
    )


class HASpec(_Model):
    task_heartbeat_timeout: int = Field(
        90,
        ge=20,
        le=3600,
        description="Seconds without a heartbeat after which a running task counts as dead "
        "(its worker crashed) and is failed or retried ([scheduler] "
        "task_instance_heartbeat_timeout; Airflow's default 300 s leaves a crashed worker's "
        "tasks 'running' for 5 minutes). Running tasks heartbeat every few seconds; keep it above "
        "an api-server restart (35-50 s measured on a busy 2-core host), during which no "
        "heartbeat arrives.",
    )
    task_retries: int = Field(
        2,
        ge=0,
        le=20,
        description="Retries of a task whose DAG sets none ([core] default_task_retries): a "
        "task interrupted by a crashed worker or a lost broker message runs again instead of "
        "failing its DAG run. 0 turns the safety net off.",
    )
    retry_delay: int = Field(
        5,
        ge=0,
        le=3600,
        description="Seconds before such a retry ([core] default_task_retry_delay; Airflow's "
        "300 s default would hold a DAG run 5 minutes after every crash).",
    )
    visibility_timeout: int = Field(
        21600,
        ge=60,
        le=7 * 86400,
        description="Seconds a task message taken by a worker may stay unacknowledged before "
        "Redis gives it to another worker ([celery_broker_transport_options] visibility_timeout). "
        "MUST exceed your longest task: a task running longer is started a second time.",
    )
    scheduler_health_threshold: int = Field(
        30,
        ge=10,
        le=600,
        description="Seconds without a heartbeat after which a scheduler counts as dead and "
        "another scheduler adopts the tasks it queued ([scheduler] "
        "scheduler_health_check_threshold). Schedulers heartbeat every 5 s; a busy loop on a "
        "small host can take 10-20 s, so lower values mistake busy for dead.",
    )
    orphan_check_interval: int = Field(
        30,
        ge=5,
        le=3600,
        description="Seconds between a scheduler's checks for dead schedulers' jobs and tasks "
        "([scheduler] orphaned_tasks_check_interval; Airflow's 300 s leaves a killed "
        "scheduler's job row 'running' and its tasks unwatched for 5 minutes).",
    )
    restart_backoff_max: int = Field(
        60,
        ge=1,
        le=3600,
        description="Most seconds between two restarts of a component that keeps crashing. "
        "Every component is restarted for as long as the cluster is up, after 1, 2, 4 ... s up "
        "to this cap (Kubernetes' CrashLoopBackOff caps at 300 s; one machine restarts cheaply). "
        "A component whose database or broker does not answer waits for it instead, and starts "
        "as soon as it answers.",
    )
    liveness_timeout: int = Field(
        60,
        ge=0,
        le=3600,
        description="Seconds a running component may stay unresponsive (a scheduler, "
        "dag-processor or triggerer whose heartbeat is older, an api-server that does not answer, "
        "a worker that does not answer Celery pings) before airscale kills it to have it "
        "restarted: a hung process is a failure too. Checked only while the database and broker "
        "answer. A component that has shown no life since it started gets three times as long "
        "(a slow start on a loaded machine is not a hang). 0 turns the check off.",
    )
    database: HADatabaseSpec = Field(
        default_factory=HADatabaseSpec,
        description="PostgreSQL primary + standby with automatic failover (embedded database only).",
    )
    broker: HABrokerSpec = Field(
        default_factory=HABrokerSpec,
        description="Redis primary + replica with Sentinel failover (embedded broker only).",
    )

    @model_validator(mode="after")
    def _timeouts_ordered(self) -> HASpec:
        # A redelivered message of a task that is still running would start it twice; the
        # heartbeat timeout must fire (and retry the task) long before Redis redelivers.
        if self.visibility_timeout <= self.task_heartbeat_timeout:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout}) must exceed task_heartbeat_timeout "
                f"({self.task_heartbeat_timeout}) and your longest task; raise visibility_timeout"
            )
        return self
