"""The `monitoring` section of the spec: metrics, alert thresholds and who gets told.

Owned by the observe capability (`airscale.observe`). The monitoring stack (Prometheus,
Alertmanager, exporters) runs by default in the `scale` profile; thresholds feed the generated
alert rules and receivers feed the generated Alertmanager routes.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airscale import task_metrics
from airscale.spec.types import EmailAddress, EmailList, HostPort, HttpUrl, Text

_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_RECEIVER_NAME = r"^[a-z][a-z0-9_-]{0,30}$"
SEVERITIES = ("critical", "warning")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AlertThresholds(_Model):
    scheduler_heartbeat_stale_seconds: int = Field(
        60, ge=5, le=3600,
        description="A scheduler whose heartbeat is older than this is stale (alert SchedulerHeartbeatStale); "
        "with no scheduler fresher than this, NoHealthyScheduler fires.",
    )
    queued_task_warning_seconds: int = Field(
        120, ge=5, le=86400,
        description="Tasks queued longer than this (oldest queued task, per queue) raise TasksQueuedTooLong.",
    )
    queued_task_critical_seconds: int = Field(
        600, ge=5, le=86400,
        description="The oldest queued task older than this raises OldestQueuedTaskTooOld (critical); "
        "Airflow's own task_queued_timeout is 600 s.",
    )
    task_failure_ratio: float = Field(
        0.5, gt=0, le=1,
        description="Share of finished tasks that failed over failure_window above which TaskFailureRate fires.",
    )
    failure_window: str = Field(
        "15m", description="Window of the task failure share (Prometheus duration, e.g. 15m)."
    )
    failure_rate_min_tasks: int = Field(
        10, ge=1, le=1000000,
        description="TaskFailureRate needs at least this many finished tasks over failure_window "
        "(one failure out of one task is not a rate).",
    )
    task_failures: int = Field(
        1, ge=1, le=100000,
        description="Failed tasks over failure_window at or above which TaskFailed fires (one failed task: 1).",
    )
    import_errors: int = Field(
        1, ge=1, le=10000, description="DAG files failing to import at or above which DagImportErrors fires."
    )
    workers_at_max_seconds: int = Field(
        900, ge=10, le=86400,
        description="A queue running at max_workers with tasks still queued for this long raises WorkersPinnedAtMax.",
    )
    postgres_connections_ratio: float = Field(
        0.8, gt=0, le=1,
        description="Share of PostgreSQL max_connections in use above which PostgresConnectionsNearLimit fires.",
    )
    redis_memory_ratio: float = Field(
        0.8, gt=0, le=1,
        description="Share of Redis maxmemory in use above which RedisMemoryHigh fires (when maxmemory is set).",
    )
    redis_memory_bytes: int = Field(
        1024 * 1024 * 1024, ge=1024 * 1024,
        description="Redis memory use above which RedisMemoryHigh fires when Redis has no maxmemory.",
    )
    disk_free_ratio: float = Field(
        0.10, gt=0, lt=1,
        description="Share of the data folder's file system still free below which DataDiskAlmostFull "
        "fires: PostgreSQL stops writing, Redis refuses tasks and logs are lost once it is full.",
    )

    @field_validator("failure_window")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not _DURATION.fullmatch(v):
            raise ValueError(f"{v!r} is not a Prometheus duration; write e.g. 30s, 15m or 1h")
        return v

    @model_validator(mode="after")
    def _warning_below_critical(self) -> AlertThresholds:
        if self.queued_task_warning_seconds > self.queued_task_critical_seconds:
            raise ValueError(
                f"queued_task_warning_seconds ({self.queued_task_warning_seconds}) is above "
                f"queued_task_critical_seconds ({self.queued_task_critical_seconds}); lower the warning"
            )
        return self


class SlackReceiver(_Model):
    api_url: HttpUrl = Field(..., description="Slack incoming-webhook URL (kept in a 0600 file, never logged).")
    channel: Text | None = Field(None, description="Channel to post to, e.g. #airflow-alerts; empty: the webhook's.")


class EmailReceiver(_Model):
    to: EmailList = Field(..., description="Recipient address(es), comma separated.")
    sender: EmailAddress = Field(..., description="From address.")
    smarthost: HostPort = Field(..., description="SMTP server as host:port.")
    auth_username: Text | None = Field(None, description="SMTP user name, if the server wants a login.")
    auth_password: Text | None = Field(None, description="SMTP password (kept in a 0600 file, never logged).")
    require_tls: bool = Field(True, description="Insist on STARTTLS.")


class ReceiverSpec(_Model):
    name: str = Field(..., pattern=_RECEIVER_NAME, description="Receiver name (lower case), used in routes.")
    severities: list[str] = Field(
        default_factory=lambda: list(SEVERITIES),
        description="Alert severities this receiver gets: critical and/or warning.",
    )
    webhook_urls: list[HttpUrl] = Field(
        default_factory=list, max_length=16, description="URLs that get Alertmanager's webhook JSON (POST)."
    )
    slack: SlackReceiver | None = Field(None, description="Post to Slack.")
    email: EmailReceiver | None = Field(None, description="Send e-mail.")

    @field_validator("severities")
    @classmethod
    def _known_severities(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SEVERITIES]
        if bad or not v:
            raise ValueError(f"severities must be a non-empty list of {', '.join(SEVERITIES)}; got {v}")
        return v

    @model_validator(mode="after")
    def _has_a_target(self) -> ReceiverSpec:
        if not (self.webhook_urls or self.slack or self.email):
            raise ValueError(f"receiver {self.name!r} has no target: give webhook_urls, slack or email")
        return self


class TaskPolicySpec(_Model):
    enabled: bool = Field(
        True,
        description="Install an airflow_local_settings task policy that gives tasks the defaults below "
        "when they set none themselves (their own arguments and default_args always win).",
    )
    retry_exponential_backoff: float = Field(
        2.0, ge=0, le=10,
        description="Backoff multiplier between retries (0: fixed delay); retries themselves come from "
        "ha.task_retries (Airflow's default_task_retries).",
    )
    max_retry_delay_seconds: int = Field(
        600, ge=1, le=86400, description="Longest wait between two tries when backing off."
    )
    execution_timeout_seconds: int | None = Field(
        None, ge=1, le=7 * 86400,
        description="Longest a task may run before it is failed; empty: no limit.",
    )
    notify_failures: bool = Field(
        True,
        description="Tell the receivers when a task fails for good (alert TaskInstanceFailed, through "
        "Alertmanager, so repeats of one task are deduplicated).",
    )
    notify_retries: bool = Field(False, description="Also tell them when a task is up for retry (TaskInstanceRetry).")


class TaskMetricsSpec(_Model):
    max_series: int = Field(
        100, ge=1, le=10000,
        description="Most label sets each metric published from task code (airscale.task_metrics) keeps; "
        "further label sets are dropped and counted in airscale_statsd_dropped_total{reason=\"cardinality\"}.",
    )
    metrics: dict[str, int] = Field(
        default_factory=dict, max_length=256,
        description="Allowance of label sets by metric name, over max_series (e.g. rows_loaded: 500).",
    )

    @field_validator("metrics")
    @classmethod
    def _names(cls, v: dict[str, int]) -> dict[str, int]:
        for name, n in v.items():
            if not task_metrics.NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a task metric name: lower-case letters, digits and _, "
                                 "starting with a letter (the name given to task_metrics.counter etc.)")
            if not 1 <= n <= 100000:
                raise ValueError(f"{name}: the allowance must be between 1 and 100000 label sets, not {n}")
        return v


class MonitoringSpec(_Model):
    enabled: bool | None = Field(
        None,
        description="Run Prometheus, Alertmanager and the exporters with the cluster. Empty: on in the "
        "'scale' profile, off in 'dev'.",
    )
    scrape_interval_seconds: int = Field(15, ge=1, le=300, description="How often Prometheus scrapes.")
    evaluation_interval_seconds: int = Field(
        15, ge=1, le=300, description="How often Prometheus evaluates the alert rules."
    )
    retention: str = Field("15d", description="How long Prometheus keeps samples (e.g. 15d, 12h).")
    alert_for_seconds: int | None = Field(
        None, ge=0, le=86400,
        description="If set, every alert fires once its condition held this long, instead of each rule's "
        "own duration (short values suit demos and tests).",
    )
    thresholds: AlertThresholds = Field(default_factory=AlertThresholds, description="Alert thresholds.")
    local_receiver: bool = Field(
        True,
        description="Run the bundled webhook receiver that `airscale alerts tail` reads; every alert goes there.",
    )
    receivers: list[ReceiverSpec] = Field(
        default_factory=list, max_length=32, description="Where alerts go besides the local receiver: webhook, Slack, e-mail."
    )
    task_policy: TaskPolicySpec = Field(
        default_factory=TaskPolicySpec, description="Error handling applied to every DAG as cluster policy."
    )
    group_wait_seconds: int = Field(
        30, ge=0, le=3600, description="How long Alertmanager waits to batch a new group's first alerts."
    )
    group_interval_seconds: int = Field(
        300, ge=1, le=86400, description="How long Alertmanager waits before telling of new alerts in a group."
    )
    repeat_interval: str = Field("4h", description="How often a still-firing alert is sent again.")
    task_metrics: TaskMetricsSpec = Field(
        default_factory=TaskMetricsSpec,
        description="Metrics DAG authors publish from task code (airscale.task_metrics): how many label "
        "sets each may keep.",
    )
    runbook_base_url: str = Field(
        "docs/runbooks.md",
        description="Where each alert's runbook_url annotation points: this page plus '#' and the "
        "alert's anchor (docs/runbooks.md#nohealthyscheduler). Default: the runbooks file of the "
        "airscale repository; give the URL where your team reads it (e.g. on your Git server).",
    )

    @field_validator("retention", "repeat_interval")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not _DURATION.fullmatch(v):
            raise ValueError(f"{v!r} is not a Prometheus duration; write e.g. 12h or 15d")
        return v

    @field_validator("receivers")
    @classmethod
    def _unique_names(cls, v: list[ReceiverSpec]) -> list[ReceiverSpec]:
        names = [r.name for r in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"receiver names must be unique; repeated: {', '.join(dup)}")
        if "local" in names:
            raise ValueError("the receiver name 'local' is reserved for the bundled receiver; rename it")
        return v
