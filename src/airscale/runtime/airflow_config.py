"""The Airflow configuration of a cluster, derived from the spec (pure: no I/O).

One `airflow.cfg` (mode 0600, it holds the secrets) serves every component, so the api
secret, JWT secret and Fernet key are the same everywhere: Airflow 3 components that disagree
on them reject each other's tokens.
"""

from __future__ import annotations

import configparser
import io
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from airscale.runtime import broker
from airscale.runtime.capability import Capability, settings_of
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import Secrets
from airscale.spec import Spec


def database_url(spec: Spec, secrets: Secrets) -> str:
    """Where Airflow connects: through PgBouncer when pooling is on."""
    from airscale.runtime import pgbouncer

    if spec.database.url:
        return spec.database.url
    ports = spec.ports
    return _airflow_db_url(spec, secrets, ports.pgbouncer if pgbouncer.enabled(spec) else ports.postgres)


def direct_database_url(spec: Spec, secrets: Secrets) -> str:
    """The database itself, bypassing PgBouncer (migrations need session-level locks)."""
    if spec.database.url:
        return spec.database.url
    return _airflow_db_url(spec, secrets, spec.ports.postgres)


def node_database_url(spec: Spec, secrets: Secrets, port: int) -> str:
    """The metadata database on one PostgreSQL node of ha.database (a standby, for reading)."""
    return _airflow_db_url(spec, secrets, port)


def _airflow_db_url(spec: Spec, secrets: Secrets, port: int) -> str:
    pw = quote(secrets.airflow_db_password, safe="")
    return f"postgresql+psycopg2://airflow:{pw}@{spec.client_host}:{port}/airflow"


def broker_url(spec: Spec, secrets: Secrets) -> str:
    """Celery's broker URL (with ha.broker through the Sentinels: airscale.runtime.broker)."""
    from airscale.runtime.broker import celery_url

    return celery_url(spec, secrets)


def api_url(spec: Spec) -> str:
    return f"http://{spec.client_host}:{spec.ports.api}"


def derived_settings(spec: Spec, layout: Layout, secrets: Secrets,
                     capabilities: Sequence[Capability]) -> dict[str, dict[str, Any]]:
    ports = spec.ports
    db_url = database_url(spec, secrets)
    settings: dict[str, dict[str, Any]] = {
        "core": {
            "executor": "CeleryExecutor" if spec.uses_celery else "LocalExecutor",
            "dags_folder": str(spec.dags_path),
            "load_examples": False,
            "fernet_key": secrets.fernet_key,
            "hostname_callable": "airscale.runtime.hostname.get_hostname",
            # Celery workers reach the api-server here to run tasks (Airflow 3 execution API).
            "execution_api_server_url": f"{api_url(spec)}/execution/",
            "simple_auth_manager_users": "admin:admin",
            "simple_auth_manager_passwords_file": str(layout.admin_passwords),
        },
        "database": {"sql_alchemy_conn": db_url},
        "api": {
            "host": spec.cluster.listen_host,
            "port": ports.api,
            "base_url": api_url(spec),
            "secret_key": secrets.api_secret_key,
            "workers": 1,
        },
        "api_auth": {"jwt_secret": secrets.jwt_secret},
        "logging": {
            "base_log_folder": str(layout.task_logs),
            "dag_processor_child_process_log_directory": str(layout.task_logs / "dag_processor"),
        },
        # New DAG files would otherwise wait up to 300 s to be noticed.
        "dag_processor": {"refresh_interval": 30},
        "operators": {"default_queue": next(iter(spec.queues))},
    }
    from airscale.runtime import pgbouncer

    if pgbouncer.enabled(spec):
        # The scheduler's LISTEN connection (airscale.runtime.scheduler_wakeup): PgBouncer's
        # transaction pooling does not keep LISTEN.
        settings["airscale"] = {"scheduler_listen_url": direct_database_url(spec, secrets)}
    if spec.uses_celery:
        settings["celery"] = {"broker_url": broker_url(spec, secrets), **result_backend_settings(spec, secrets, db_url)}
    for section, values in recovery_settings(spec).items():
        settings.setdefault(section, {}).update(values)
    for section, values in broker_sections(spec, secrets).items():
        settings.setdefault(section, {}).update(values)
    # What the capabilities set (statsd to the airscale exporter when monitoring is on).
    for section, values in settings_of(capabilities, spec).items():
        settings.setdefault(section, {}).update(values)
    return settings


def result_backend_settings(spec: Spec, secrets: Secrets, db_url: str) -> dict[str, Any]:
    """Celery's result backend (spec `broker.result_backend`)."""
    if spec.broker.result_backend == "database":
        return {"result_backend": "db+" + db_url.replace("postgresql+psycopg2://", "postgresql://")}
    extra: dict[str, Any] = {
        # A worker that cannot reach Redis to store a result (a broker restart) retries until it
        # can instead of dropping the result, which the scheduler's executor would wait for.
        "result_backend_always_retry": True,
        "result_backend_max_sleep_between_retries_ms": 2000,
        "result_expires": result_expires_s(spec),
    }
    if broker.sentinel_on(spec):
        # Celery's own default is 120 s: a scheduler polling results on a hung primary would
        # wait that long before it asks the Sentinels again (Celery docs, redis_socket_timeout).
        extra["redis_socket_timeout"] = broker.SOCKET_TIMEOUT
        extra["redis_socket_connect_timeout"] = broker.CONNECT_TIMEOUT
    return {"result_backend": broker_url(spec, secrets), "extra_celery_config": json.dumps(extra)}


def result_expires_s(spec: Spec) -> int:
    """How long Redis keeps a task's Celery result. The executor that queued the task reads it
    within a loop, and an adopting scheduler within [scheduler] orphaned_tasks_check_interval
    (a task whose state reached the database is not adopted at all), so ten checks, at least
    15 minutes, leave room for a scheduler restart. Celery's default keeps every result a day:
    Redis then grows with each day's tasks before the first one expires."""
    return max(900, 10 * spec.ha.orphan_check_interval)


def broker_sections(spec: Spec, secrets: Secrets) -> dict[str, dict[str, Any]]:
    """With ha.broker, the transport options of the Sentinel URLs (Celery's SentinelChannel for
    the broker, SentinelBackend for results); the provider json.loads `sentinel_kwargs`
    (airflow/providers/celery/executors/default_celery.py)."""
    if not broker.sentinel_on(spec):
        return {}
    opts = broker.airflow_transport_options(spec, secrets)
    out = {"celery_broker_transport_options": dict(opts)}
    if spec.broker.result_backend == "redis":
        out["celery_result_backend_transport_options"] = {
            k: opts[k] for k in ("master_name", "sentinel_kwargs")}
    return out


def recovery_settings(spec: Spec) -> dict[str, dict[str, Any]]:
    """What makes a crashed part's tasks come back fast and exactly once (spec `ha`).

    Measured with stock settings (Airflow 3.3.2, celery provider 3.26.0): a worker killed with
    kill -9 left its tasks "running" for 300 s, then failed them without retry; its messages
    waited 86400 s in Redis; a killed scheduler's job row stayed "running". Names checked
    against airflow/config_templates/config.yml and the provider's default_celery.py.
    """
    ha = spec.ha
    out: dict[str, dict[str, Any]] = {
        "core": {
            # A task interrupted by a crash (heartbeat timeout, broker message lost while
            # publishing) is retried instead of failing its DAG run. Only tasks that set no
            # `retries` of their own get this default.
            "default_task_retries": ha.task_retries,
            # Airflow's 300 s default would hold every interrupted DAG run for 5 minutes.
            "default_task_retry_delay": ha.retry_delay,
        },
        "scheduler": {
            # A running task heartbeats every [workers] min_heartbeat_interval (5 s); after this
            # long without one its worker is taken as dead and the task is failed/retried, and
            # the scheduler frees the executor slot it held (change_state(remove_running=True)),
            # which ends the slot leak of a killed worker.
            "task_instance_heartbeat_timeout": ha.task_heartbeat_timeout,
            # Look for such tasks every 5 s rather than 10: recovery = timeout + this.
            "task_instance_heartbeat_timeout_detection_interval": 5.0,
            # After this long without a heartbeat a scheduler is dead: its job row is marked
            # failed and another scheduler adopts the tasks it queued...
            "scheduler_health_check_threshold": ha.scheduler_health_threshold,
            # ...checked this often (300 s by default left a killed scheduler's row "running").
            "orphaned_tasks_check_interval": float(ha.orphan_check_interval),
        },
        "workers": {
            # A task supervisor that cannot heartbeat (api-server restarting) kills its task
            # after this many failures in a row; Airflow's 3 (about 15 s) kills healthy tasks
            # during an api-server restart. Half the heartbeat timeout, at 5 s a heartbeat,
            # still stops a task before the scheduler retries it elsewhere.
            "max_failed_heartbeats": max(3, ha.task_heartbeat_timeout // 10),
            # Every call a task makes to the api-server (start, heartbeat, finish) retries with
            # random exponential waits between 1 s and wait_max. Airflow's 5 tries ride out
            # about 7 s; a killed api-server took 35-50 s to serve again on a busy 2-core host,
            # and tasks starting meanwhile failed their start and burnt their retries (2 DAG runs
            # failed in the api-server-kill drill). 15 tries of at most 10 s wait ~60 s.
            "execution_api_retries": 15,
            "execution_api_retry_wait_max": 10.0,
        },
    }
    if spec.uses_celery:
        out["celery"] = {
            # The provider's default already, stated so it cannot silently change: a message is
            # acknowledged only when its task ends, so a worker that dies holding it does not
            # lose it (Redis gives it back after visibility_timeout).
            "task_acks_late": True,
            # With acks_late a worker holds concurrency x this many messages: 1 means it holds
            # only what it runs, so a crash strands no queued-but-not-started message for the
            # length of the visibility timeout.
            "worker_prefetch_multiplier": 1,
        }
        out["celery_broker_transport_options"] = {
            # Redis redelivers a message unacknowledged for this long. It must exceed the
            # longest task, or a task still running starts a second time; the tasks of a
            # crashed worker come back sooner through the heartbeat timeout and a retry.
            "visibility_timeout": ha.visibility_timeout,
            # kombu scans for expired messages every unacked_restore_interval (10 s) x
            # unacked_restore_throttle (10) = 100 s; 1 makes it every 10 s once expired (the
            # provider passes this whole section to kombu, which reads both names).
            "unacked_restore_throttle": 1,
        }
    return out


def merged_settings(spec: Spec, layout: Layout, secrets: Secrets,
                    capabilities: Sequence[Capability]) -> dict[str, dict[str, Any]]:
    settings = derived_settings(spec, layout, secrets, capabilities)
    # The tuning plan (if enabled) sits between what airscale derives and the spec's own
    # airflow_config, which always wins.
    from airscale.tuning.apply import planned_airflow_settings

    for section, values in planned_airflow_settings(spec).items():
        settings.setdefault(section, {}).update(values)
    for section, values in spec.airflow_config.items():
        settings.setdefault(section, {}).update(values)
    return settings


def render_airflow_cfg(spec: Spec, layout: Layout, secrets: Secrets,
                       capabilities: Sequence[Capability]) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    for section, values in merged_settings(spec, layout, secrets, capabilities).items():
        parser[section] = {k: _format(v) for k, v in values.items()}
    out = io.StringIO()
    out.write("# Generated by airscale from the spec; edits are overwritten by `airscale up`.\n")
    out.write("# Change settings in the spec's airflow_config section instead.\n\n")
    parser.write(out)
    return out.getvalue()


def _format(v: Any) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    # Airflow reads its config with '%' interpolation.
    return str(v).replace("%", "%%")
