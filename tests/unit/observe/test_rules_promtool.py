"""The generated alert rules, checked and unit-tested by promtool (Debian package `prometheus`).

Each case feeds series to promtool and states which alerts fire (or none) at a time. The
rules come from a real spec through `render_rules`, so a threshold or a `for:` that the code
gets wrong fails here. Annotations are left out of the tested copy: promtool compares them
verbatim, and `promtool check rules` already validates their templates.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from airscale.observe.rules import render_rules, rules
from airscale.spec import Spec

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")

SPEC = Spec.model_validate({"autoscaling": {"enabled": True}, "backup": {"every_hours": 1}, "monitoring": {"thresholds": {
    "scheduler_heartbeat_stale_seconds": 60, "queued_task_warning_seconds": 120,
    "queued_task_critical_seconds": 600, "task_failure_ratio": 0.5, "failure_window": "15m",
    "task_failures": 1, "import_errors": 1, "failure_rate_min_tasks": 10, "workers_at_max_seconds": 900,
    "postgres_connections_ratio": 0.8, "redis_memory_ratio": 0.8, "redis_memory_bytes": 1000000000,
    "disk_free_ratio": 0.1,
}}})
assert SPEC.uses_celery, "the tested rules must include the broker's and the autoscaler's"

S1 = 'hostname="scheduler-1.h",job_type="scheduler",component="scheduler-1"'
S2 = 'hostname="scheduler-2.h",job_type="scheduler",component="scheduler-2"'
TRG = 'hostname="triggerer.h",job_type="triggerer",component="triggerer"'
UNRELATED = [("airscale_metadata_db_up", "1x40")]


def case(rule, series, eval_time, alerts, id):
    """alerts: list of expected label dicts (severity added by the caller's rule), [] for none."""
    return pytest.param(rule, series, eval_time, alerts, id=id)


CASES = [
    case("NoHealthyScheduler", [(f"airscale_job_heartbeat_age_seconds{{{S1}}}", "70+15x20")], "2m",
         [{"severity": "critical"}], "no-scheduler-fresh"),
    case("NoHealthyScheduler", UNRELATED, "2m", [{"severity": "critical"}], "no-scheduler-rows-at-all"),
    case("NoHealthyScheduler", [(f"airscale_job_heartbeat_age_seconds{{{S1}}}", "70+15x20"),
                                (f"airscale_job_heartbeat_age_seconds{{{S2}}}", "5x20")], "2m", [],
         "one-of-two-fresh"),
    case("NoHealthyScheduler", [(f"airscale_job_heartbeat_age_seconds{{{S1}}}", "70x2 5x20")], "2m", [],
         "recovered-before-for"),
    case("SchedulerHeartbeatStale", [(f"airscale_job_heartbeat_age_seconds{{{S1}}}", "100+15x20"),
                                     (f"airscale_job_running{{{S1}}}", "1x20")], "2m",
         [{"severity": "warning", "hostname": "scheduler-1.h", "job_type": "scheduler", "component": "scheduler-1"}],
         "killed-scheduler-row-still-running"),
    case("SchedulerHeartbeatStale", [(f"airscale_job_heartbeat_age_seconds{{{S1}}}", "100+15x20"),
                                     (f"airscale_job_running{{{S1}}}", "0x20")], "2m", [],
         "stopped-cleanly-not-stale"),
    case("SchedulerHeartbeatStale", [(f"airscale_job_heartbeat_age_seconds{{{S1}}}", "5x20"),
                                     (f"airscale_job_running{{{S1}}}", "1x20")], "2m", [], "fresh"),
    case("JobHeartbeatStale", [(f"airscale_job_heartbeat_age_seconds{{{TRG}}}", "100+15x20"),
                               (f"airscale_job_running{{{TRG}}}", "1x20")], "2m",
         [{"severity": "warning", "hostname": "triggerer.h", "job_type": "triggerer", "component": "triggerer"}],
         "triggerer-stale"),
    case("JobHeartbeatStale", [(f"airscale_job_heartbeat_age_seconds{{{S1}}}", "100+15x20"),
                               (f"airscale_job_running{{{S1}}}", "1x20")], "2m", [], "schedulers-not-its-business"),
    case("TasksQueuedTooLong", [('airscale_oldest_queued_task_age_seconds{queue="default"}', "130x10")], "2m",
         [{"severity": "warning", "queue": "default"}], "queued-over-warning"),
    case("TasksQueuedTooLong", [('airscale_oldest_queued_task_age_seconds{queue="default"}', "110x10")], "2m", [],
         "queued-under-warning"),
    case("OldestQueuedTaskTooOld", [('airscale_oldest_queued_task_age_seconds{queue="reports"}', "700x10")], "2m",
         [{"severity": "critical", "queue": "reports"}], "queued-over-critical"),
    case("OldestQueuedTaskTooOld", [('airscale_oldest_queued_task_age_seconds{queue="reports"}', "500x10")], "2m", [],
         "queued-under-critical"),
    case("TaskFailed", [('airscale_task_instances_failed_recent{dag_id="etl"}', "1x4")], "30s",
         [{"severity": "warning", "dag_id": "etl"}], "one-failure-fires-at-once"),
    case("TaskFailed", [('airscale_task_instances_failed_recent{dag_id="etl"}', "0x4")], "30s", [], "no-failure"),
    case("TaskFailureRate", [('airscale_task_finished_total{state="failed"}', "0+10x60"),
                             ('airscale_task_finished_total{state="success"}', "0+1x60")], "10m",
         [{"severity": "critical"}], "most-tasks-fail"),
    case("TaskFailureRate", [('airscale_task_finished_total{state="failed"}', "0+1x60"),
                             ('airscale_task_finished_total{state="success"}', "0+10x60")], "10m", [],
         "few-tasks-fail"),
    case("TaskFailureRate", [('airscale_task_finished_total{state="failed"}', "0 1x60"),
                             ('airscale_task_finished_total{state="success"}', "0x60")], "10m", [],
         "one-failure-is-not-a-rate"),
    case("TaskFailureRate", [('airscale_task_finished_total{state="failed"}', "0x60"),
                             ('airscale_task_finished_total{state="success"}', "0x60")], "10m", [], "idle"),
    case("DagImportErrors", [("airscale_dag_import_errors", "2x40")], "6m", [{"severity": "warning"}],
         "broken-files"),
    case("DagImportErrors", [("airscale_dag_import_errors", "2x10 0x30")], "6m", [], "fixed-in-time"),
    case("WorkersPinnedAtMax", [('airscale_workers_running{queue="default"}', "2x80"),
                                ('airscale_workers_max{queue="default"}', "2x80"),
                                ('airscale_task_instances{queue="default",state="queued"}', "5x80")], "16m",
         [{"severity": "warning", "queue": "default"}], "at-max-with-backlog"),
    case("WorkersPinnedAtMax", [('airscale_workers_running{queue="default"}', "2x80"),
                                ('airscale_workers_max{queue="default"}', "2x80"),
                                ('airscale_task_instances{queue="default",state="queued"}', "0x80")], "16m", [],
         "at-max-but-nothing-waits"),
    case("WorkersPinnedAtMax", [('airscale_workers_running{queue="default"}', "1x80"),
                                ('airscale_workers_max{queue="default"}', "2x80"),
                                ('airscale_task_instances{queue="default",state="queued"}', "5x80")], "16m", [],
         "room-to-grow"),
    case("ComponentDown", [('airscale_component_up{component="scheduler-1",kind="scheduler"}', "0x10")], "2m",
         [{"severity": "critical", "component": "scheduler-1", "kind": "scheduler"}], "scheduler-down"),
    case("ComponentDown", [('airscale_component_up{component="scheduler-1",kind="scheduler"}', "1x10")], "2m", [],
         "all-up"),
    case("ComponentRestarted", [('airscale_component_restarts_total{component="worker-default-1",kind="worker"}',
                                 "0 0 1 1 1")], "3m",
         [{"severity": "warning", "component": "worker-default-1", "kind": "worker"}], "one-restart"),
    case("ComponentRestarted", [('airscale_component_restarts_total{component="worker-default-1",kind="worker"}',
                                 "2x10")], "5m", [], "old-restarts-only"),
    case("BrokerRestarted", [('redis_uptime_in_seconds{instance="r"}', "600 660 720 5 65 125")], "5m",
         [{"severity": "warning", "instance": "r"}], "uptime-went-down"),
    case("BrokerRestarted", [('redis_uptime_in_seconds{instance="r"}', "5+60x10")], "5m", [], "fresh-start-grows"),
    case("DatabaseRestarted", [('airscale_database_start_time_seconds{server_port="28001"}', "1000 1000 1000 5000 5000")],
         "4m", [{"severity": "warning"}], "start-time-changed"),
    case("DatabaseRestarted", [('airscale_database_start_time_seconds{server_port="28093"}', "1000 1000 _ _ _"),
                               ('airscale_database_start_time_seconds{server_port="28094"}', "_ _ 3000 3000 3000")],
         "4m", [{"severity": "warning"}], "failed-over-to-the-other-node"),
    case("DatabaseRestarted", [('airscale_database_start_time_seconds{server_port="28001"}', "1000x10")], "5m", [],
         "same-postmaster"),
    case("ExporterDown", [('up{job="airscale",instance="127.0.0.1:28085"}', "0x10")], "2m",
         [{"severity": "critical", "job": "airscale", "instance": "127.0.0.1:28085"}], "exporter-down"),
    case("ExporterDown", [('up{job="airscale",instance="127.0.0.1:28085"}', "1x10")], "2m", [], "exporter-up"),
    case("PostgresConnectionsNearLimit",
         [('pg_stat_activity_count{instance="pg",state="idle",datname="airflow"}', "90x20"),
          ('pg_stat_activity_count{instance="pg",state="active",datname="airflow"}', "80x20"),
          ('pg_settings_max_connections{instance="pg"}', "200x20")], "3m",
         [{"severity": "warning", "instance": "pg"}], "85-percent"),
    case("PostgresConnectionsNearLimit",
         [('pg_stat_activity_count{instance="pg",state="idle",datname="airflow"}', "50x20"),
          ('pg_settings_max_connections{instance="pg"}', "200x20")], "3m", [], "25-percent"),
    case("DataDiskAlmostFull", [("airscale_data_disk_free_bytes", "50x10"), ("airscale_data_disk_size_bytes", "1000x10")],
         "3m", [{"severity": "critical"}], "five-percent-free"),
    case("DataDiskAlmostFull", [("airscale_data_disk_free_bytes", "500x10"), ("airscale_data_disk_size_bytes", "1000x10")],
         "3m", [], "half-free"),
    case("DataDiskAlmostFull", [("airscale_data_disk_free_bytes", "50x1 500x10"),
                                ("airscale_data_disk_size_bytes", "1000x10")], "3m", [], "freed-before-for"),
    case("RedisMemoryHigh", [('redis_memory_used_bytes{instance="r"}', "2000000000x30"),
                             ('redis_memory_max_bytes{instance="r"}', "0x30")], "6m",
         [{"severity": "warning", "instance": "r"}], "no-maxmemory-over-absolute"),
    case("RedisMemoryHigh", [('redis_memory_used_bytes{instance="r"}', "900x30"),
                             ('redis_memory_max_bytes{instance="r"}', "1000x30")], "6m",
         [{"severity": "warning", "instance": "r"}], "maxmemory-90-percent"),
    case("WorkersHeldByMemory", [('airscale_autoscaler_memory_held{queue="default"}', "0 0 1x10")], "3m",
         [{"severity": "warning", "queue": "default"}], "held-for-a-minute"),
    case("WorkersHeldByMemory", [('airscale_autoscaler_memory_held{queue="default"}', "1 1 0x10")], "3m", [],
         "released"),
    case("AutoscalerSignalMissing", UNRELATED, "11m", [{"severity": "warning"}], "autoscaler-not-scraped"),
    case("AutoscalerSignalMissing", [('airscale_autoscaler_desired_workers{queue="default"}', "2x50")] + UNRELATED,
         "11m", [], "desired-count-exported"),
    # backup.every_hours 1: the last good backup may be 1.5 h = 5400 s old; at 100m time() is 6000.
    case("BackupTooOld", [("airscale_backup_last_success_timestamp_seconds", "0x500")], "100m",
         [{"severity": "critical"}], "no-good-backup-for-100-minutes"),
    case("BackupTooOld", [("airscale_backup_last_success_timestamp_seconds", "900x500")], "100m", [],
         "85-minutes-old"),
    case("BackupTooOld", [("airscale_backup_last_success_timestamp_seconds", "0x300 3600x200")], "100m", [],
         "a-backup-came-in-time"),
    case("RedisMemoryHigh", [('redis_memory_used_bytes{instance="r"}', "1000000x30"),
                             ('redis_memory_max_bytes{instance="r"}', "0x30")], "6m", [], "small-no-maxmemory"),
    case("RedisMemoryHigh", [('redis_memory_used_bytes{instance="r"}', "500x30"),
                             ('redis_memory_max_bytes{instance="r"}', "1000x30")], "6m", [], "maxmemory-half"),
]


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rules")
    (d / "airscale.rules.yml").write_text(render_rules(SPEC))
    tested = yaml.safe_load(render_rules(SPEC))
    for rule in tested["groups"][0]["rules"]:
        rule.pop("annotations")
    (d / "tested.rules.yml").write_text(yaml.safe_dump(tested))
    return d


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("spec_data", [
    pytest.param({}, id="defaults"),
    pytest.param({"monitoring": {"alert_for_seconds": 5, "evaluation_interval_seconds": 2}}, id="short-for"),
    pytest.param({"monitoring": {"thresholds": {"failure_window": "1h", "task_failure_ratio": 0.05}}}, id="custom"),
])
def test_promtool_check_rules(tmp_path, spec_data):
    f = tmp_path / "r.yml"
    f.write_text(render_rules(Spec.model_validate(spec_data)))
    proc = _promtool("check", "rules", str(f))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules(Spec()))} rules found" in proc.stdout


@pytest.mark.parametrize("rule,series,eval_time,alerts", CASES)
def test_rule(rules_dir, tmp_path, rule, series, eval_time, alerts):
    test = {
        "rule_files": [str(rules_dir / "tested.rules.yml")],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{
                "eval_time": eval_time, "alertname": rule,
                "exp_alerts": [{"exp_labels": labels} for labels in alerts],
            }],
        }],
    }
    f = tmp_path / "test.yml"
    f.write_text(yaml.safe_dump(test))
    proc = _promtool("test", "rules", str(f))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rule_has_a_firing_and_a_quiet_case():
    names = {r.name for r in rules(SPEC)}
    firing = {p.values[0] for p in CASES if p.values[3]}
    quiet = {p.values[0] for p in CASES if not p.values[3]}
    assert names - firing == set(), "rules without a case where they fire"
    assert names - quiet == set(), "rules without a case where they stay quiet"
