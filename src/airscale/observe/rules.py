"""Prometheus alert rules generated from the spec's thresholds (pure).

Each rule names what is wrong and for whom: severity `critical` wakes someone, `warning` can
wait for working hours. Durations (`for:`) are per rule; `monitoring.alert_for_seconds`
replaces them all (demos and tests). Every rule has promtool unit tests in
tests/unit/observe/test_rules_promtool.py, and a test checks none is left without one.

Every rule also carries a `runbook_url` annotation: the section of docs/runbooks.md that says
how to confirm and fix it with airscale's commands, under `monitoring.runbook_base_url`.
Alertmanager passes it on to Slack, e-mail and `airscale alerts tail`; Grafana links it. A
test checks that every rule name has its section (tests/unit/observe/test_runbooks.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from airscale.observe.environment import Environment, local_environment
from airscale.spec import Spec


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    for_seconds: int
    severity: str
    summary: str
    description: str


def rules(spec: Spec, env: Environment | None = None) -> list[Rule]:
    """The rules for `spec` where `env` says it runs (default: the local cluster)."""
    env = env or local_environment(spec)
    t = spec.monitoring.thresholds
    stale = t.scheduler_heartbeat_stale_seconds
    w = t.failure_window
    out = [
        Rule(
            "NoHealthyScheduler",
            # `or vector(0)`: with no scheduler row at all, count() is empty, not 0.
            f'(count(airscale_job_heartbeat_age_seconds{{job_type="scheduler"}} < {stale}) or vector(0)) == 0',
            60, "critical",
            "No scheduler has heartbeated in the last {stale}s: nothing gets scheduled".format(stale=stale),
            "Every scheduler is stopped, crashed or stuck. Check `airscale status` and `airscale logs scheduler-1`.",
        ),
        Rule(
            "SchedulerHeartbeatStale",
            f'airscale_job_heartbeat_age_seconds{{job_type="scheduler"}} > {stale} '
            "and on(job_type, hostname) airscale_job_running == 1",
            60, "warning",
            "Scheduler {{ $labels.component }} has not heartbeated for {{ $value | humanizeDuration }}",
            "Its job row still says running: it was killed or hangs. Other schedulers carry on.",
        ),
        Rule(
            "JobHeartbeatStale",
            f'airscale_job_heartbeat_age_seconds{{job_type=~"dag-processor|triggerer"}} > {stale} '
            "and on(job_type, hostname) airscale_job_running == 1",
            60, "warning",
            "{{ $labels.job_type }} {{ $labels.component }} has not heartbeated for {{ $value | humanizeDuration }}",
            "DAG files are not parsed (dag-processor) or deferred tasks do not resume (triggerer).",
        ),
        Rule(
            "TasksQueuedTooLong",
            f"airscale_oldest_queued_task_age_seconds > {t.queued_task_warning_seconds}",
            60, "warning",
            "Tasks on queue {{ $labels.queue }} wait in queued for {{ $value | humanizeDuration }}",
            "Workers of this queue are busy, missing or not consuming. See airscale status.",
        ),
        Rule(
            "OldestQueuedTaskTooOld",
            f"airscale_oldest_queued_task_age_seconds > {t.queued_task_critical_seconds}",
            60, "critical",
            "The oldest queued task on {{ $labels.queue }} is {{ $value | humanizeDuration }} old",
            "Past Airflow's task_queued_timeout such tasks are failed or requeued: the queue is stuck.",
        ),
        Rule(
            "TaskFailed",
            f"airscale_task_instances_failed_recent >= {t.task_failures}",
            0, "warning",
            "{{ $value }} task(s) of DAG {{ $labels.dag_id }} failed in the last " + w,
            "Read the task logs in the Airflow UI for this DAG.",
        ),
        Rule(
            "TaskFailureRate",
            f'sum(increase(airscale_task_finished_total{{state="failed"}}[{w}])) '
            f'/ clamp_min(sum(increase(airscale_task_finished_total{{state=~"success|failed"}}[{w}])), 1) '
            f"> {t.task_failure_ratio} "
            f'and sum(increase(airscale_task_finished_total{{state=~"success|failed"}}[{w}])) '
            f">= {t.failure_rate_min_tasks}",
            300, "critical",
            "{{ $value | humanizePercentage }} of tasks failed over the last " + w,
            "Failures across DAGs point at the platform (database, broker, workers), not one DAG.",
        ),
        Rule(
            "DagImportErrors",
            f"airscale_dag_import_errors >= {t.import_errors}",
            300, "warning",
            "{{ $value }} DAG file(s) fail to import",
            "Their DAGs are not scheduled. `airscale airflow dags list-import-errors` shows why.",
        ),
        Rule(
            "WorkersPinnedAtMax",
            f"{env.workers_running} >= on(queue) airscale_workers_max "
            'and on(queue) sum by(queue) (airscale_task_instances{state="queued"}) > 0',
            t.workers_at_max_seconds, "warning",
            "Queue {{ $labels.queue }} runs at max_workers with tasks still queued",
            "The autoscaler cannot add workers: raise queues.<queue>.max_workers or add capacity.",
        ),
        Rule(
            "ComponentDown",
            "airscale_component_up == 0",
            60, "critical",
            "Component {{ $labels.component }} died",
            "It exited or keeps failing at start (not stopped on purpose). `airscale logs {{ $labels.component }}`.",
        ),
        Rule(
            "ComponentRestarted",
            # Fires at the first restart: a crash the listener healed is still worth a look
            # (a drill, an OOM kill, a bug), but it wakes no one.
            "increase(airscale_component_restarts_total[10m]) > 0",
            0, "warning",
            "Component {{ $labels.component }} died and was restarted",
            "It is running again. If it keeps happening, `airscale logs {{ $labels.component }}` "
            "and `airscale status` show why.",
        ),
        Rule(
            "BrokerRestarted",
            # Redis's uptime going down means it restarted: queued messages survive in the AOF,
            # but workers reconnect and unacknowledged tasks are redelivered.
            "resets(redis_uptime_in_seconds[10m]) > 0",
            0, "warning",
            "Redis, the Celery broker, restarted",
            "Workers reconnected and unacknowledged messages were redelivered. Check `airscale logs redis`.",
        ),
        Rule(
            "DatabaseRestarted",
            # The start time changes when PostgreSQL restarts, or when the endpoint now reaches
            # another node (an HA failover).
            "changes(max(airscale_database_start_time_seconds)[10m:]) > 0",
            0, "warning",
            "The metadata database restarted or failed over",
            "Connections were cut and Airflow reconnected. `airscale status` shows which node is primary.",
        ),
        Rule(
            "ExporterDown",
            f"up{env.up_selector} == 0",
            60, "critical",
            "Prometheus cannot scrape {{ $labels.job }} ({{ $labels.instance }})",
            "Alerts that need its metrics are blind while it is down.",
        ),
        Rule(
            "PostgresConnectionsNearLimit",
            "sum by(instance) (pg_stat_activity_count) / on(instance) max by(instance) "
            f"(pg_settings_max_connections) > {t.postgres_connections_ratio}",
            120, "warning",
            "PostgreSQL uses {{ $value | humanizePercentage }} of max_connections",
            "New connections will soon be refused. Add PgBouncer or raise database.max_connections.",
        ),
        Rule(
            "RedisMemoryHigh",
            f"(redis_memory_used_bytes / redis_memory_max_bytes > {t.redis_memory_ratio} "
            "and redis_memory_max_bytes > 0) "
            f"or (redis_memory_used_bytes > {t.redis_memory_bytes} and redis_memory_max_bytes == 0)",
            300, "warning",
            "Redis memory is high ({{ $value }})",
            "The Celery broker holds too many messages or results: check queued tasks and workers.",
        ),
        Rule(
            "DataDiskAlmostFull",
            f"airscale_data_disk_free_bytes / airscale_data_disk_size_bytes < {t.disk_free_ratio}",
            60, "critical",
            "The data folder's disk has {{ $value | humanizePercentage }} free",
            "Once it is full PostgreSQL stops committing, Redis refuses new tasks and logs are lost. "
            "Free space (old task logs: `airscale db clean` and the logs folder) or grow the disk.",
        ),
        Rule(
            "WorkersHeldByMemory",
            "max by(queue) (airscale_autoscaler_memory_held) == 1",
            60, "warning",
            "Queue {{ $labels.queue }} wants more workers than the machine's memory takes",
            "The autoscaler holds its workers (reason MemoryHeadroom): a new worker with every slot "
            "busy would leave less than autoscaling.memory_floor_mib available. Tasks wait in the "
            "queue; lower queues.<queue>.concurrency, free memory, or add a worker host.",
        ),
        Rule(
            "AutoscalerSignalMissing",
            # Absent, not 0: the autoscaler is down or Prometheus cannot scrape it.
            "absent(airscale_autoscaler_desired_workers)",
            600, "warning",
            "The autoscaler exports no desired worker count",
            "Workers are not pre-warmed for scheduled runs and not scaled on its decisions; on "
            "Kubernetes KEDA follows the chart's SQL query alone and busy pods lose their deletion cost.",
        ),
    ]
    if spec.backup.every_hours > 0:
        max_age = backup_max_age_seconds(spec.backup.every_hours)
        out.append(Rule(
            "BackupTooOld",
            f"time() - airscale_backup_last_success_timestamp_seconds > {max_age}",
            0, "critical",
            "The last good backup ended {{ $value | humanizeDuration }} ago",
            f"Backups are planned every {spec.backup.every_hours:g} h: a restore now would lose more "
            "than planned. `airscale logs backup` says why they fail.",
        ))
    out = [r for r in out if not env.lacks(r.expr)]
    override = spec.monitoring.alert_for_seconds
    if override is not None:
        out = [Rule(r.name, r.expr, override, r.severity, r.summary, r.description) for r in out]
    return out


def backup_max_age_seconds(every_hours: float) -> int:
    """How old the last good backup may get: one period, plus half of one for the dump's own
    time and a retry after a failure (the schedule retries within min(period, 15 min))."""
    return round(every_hours * 3600 * 1.5)


def runbook_anchor(alert: str) -> str:
    """The anchor of an alert's section in docs/runbooks.md. The section's heading is the alert
    name, and GitHub's anchor of a heading of one CamelCase word is that word in lower case."""
    return alert.lower()


def runbook_url(spec: Spec, alert: str) -> str:
    return f"{spec.monitoring.runbook_base_url}#{runbook_anchor(alert)}"


def rule_group(spec: Spec, env: Environment | None = None) -> dict:
    """The Prometheus rule group (the same shape in a rules file and in a PrometheusRule)."""
    return {
        "name": "airscale",
        "interval": f"{spec.monitoring.evaluation_interval_seconds}s",
        "rules": [
            {
                "alert": r.name,
                "expr": r.expr,
                "for": f"{r.for_seconds}s",
                "labels": {"severity": r.severity},
                "annotations": {"summary": r.summary, "description": r.description,
                                "runbook_url": runbook_url(spec, r.name)},
            }
            for r in rules(spec, env)
        ],
    }


def render_rules(spec: Spec) -> str:
    """The local cluster's rules file."""
    group = rule_group(spec)
    header = "# Generated by airscale from the spec's monitoring.thresholds; edits are overwritten.\n"
    return header + yaml.safe_dump({"groups": [group]}, sort_keys=False, width=200)
