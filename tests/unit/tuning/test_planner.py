"""Each planned setting follows from its inputs (table tests), plus invariants over many profiles."""

from __future__ import annotations

import itertools

import pytest

from airscale.tuning.planner import AIRFLOW_STOCK, AIRSCALE_OFF, idle_cpu_share, plan
from airscale.spec.workload import WorkloadProfile


def P(**kw) -> WorkloadProfile:
    return WorkloadProfile(**kw)


def value(p, section, key):
    s = p.get(section, key)
    return None if s is None else s.value


@pytest.mark.parametrize(
    "profile, section, key, expected",
    [
        # latency goal -> idle sleep = goal - 0.05 s chain overhead, within [0.05, 1]
        pytest.param(P(latency_goal_seconds=0.25), "scheduler", "scheduler_idle_sleep_time", 0.2, id="goal-0.25-sleep-0.2"),
        pytest.param(P(latency_goal_seconds=0.15), "scheduler", "scheduler_idle_sleep_time", 0.1, id="goal-0.15-sleep-0.1"),
        pytest.param(P(latency_goal_seconds=0.05), "scheduler", "scheduler_idle_sleep_time", 0.05, id="goal-floor"),
        pytest.param(P(latency_goal_seconds=5), "scheduler", "scheduler_idle_sleep_time", None, id="slow-goal-keeps-stock-1s"),
        # pacing: short tasks get a short sleep right after activity, long tasks do not need it
        pytest.param(P(typical_task_seconds=1), "airscale", "scheduler_busy_sleep", 0.02, id="short-tasks-paced"),
        pytest.param(P(typical_task_seconds=1), "airscale", "scheduler_hot_seconds", 3.0, id="hot-3s"),
        pytest.param(P(typical_task_seconds=600, tasks_per_day=1000), "airscale", "scheduler_busy_sleep", None, id="long-tasks-not-paced"),
        pytest.param(P(), "airscale", "supervisor_exit_wakeup", True, id="exit-wakeup-always-planned"),
        pytest.param(P(), "airscale", "scheduler_event_wakeup", True, id="event-wakeup-always-planned"),
        pytest.param(P(typical_task_seconds=600, tasks_per_day=1000), "airscale", "scheduler_event_sleep", 5.0,
                     id="event-sleep-is-the-heartbeat-interval"),
        # worker DAG cache: as old as the dag-processor's interval allows, at most 300 s
        pytest.param(P(dags=10), "airscale", "worker_dag_cache_seconds", 150, id="dag-cache-follows-interval"),
        pytest.param(P(dags=1000, parse_seconds_per_dag=0.3), "airscale", "worker_dag_cache_seconds", 300,
                     id="dag-cache-capped-300"),
        # task length and worker size -> concurrency
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=8), "celery", "worker_concurrency", 8,
                     id="short-tasks-4-per-core"),
        pytest.param(P(typical_task_seconds=60), "celery", "worker_concurrency", None, id="long-tasks-8-per-core-is-stock-16"),
        pytest.param(P(typical_task_seconds=60, worker_machine={"cores": 4, "memory_gib": 16}),
                     "celery", "worker_concurrency", 32, id="long-tasks-4-cores"),
        # (1 GiB - 0.1 GiB for the worker) / 0.08 GiB per busy slot (measured PSS) = 11 < 64 by CPU
        pytest.param(P(typical_task_seconds=60, worker_machine={"cores": 8, "memory_gib": 1}),
                     "celery", "worker_concurrency", 11, id="memory-bound"),
        # peak and schedulers -> parallelism (2 tasks in flight per slot, per scheduler, >= 32)
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=200, tasks_per_day=100_000),
                     "core", "parallelism", 400, id="parallelism-200-slots"),
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=200, tasks_per_day=100_000, schedulers=2),
                     "core", "parallelism", 200, id="parallelism-split-over-2-schedulers"),
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=8), "core", "parallelism", None,
                     id="small-cluster-keeps-stock-32"),
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=200, tasks_per_day=100_000),
                     "core", "max_active_tasks_per_dag", 200, id="per-dag-limit-follows-peak"),
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=2000, tasks_per_day=100_000),
                     "scheduler", "max_tis_per_query", 512, id="tis-per-query-capped"),
        # the heartbeat interval stays stock: the exit wakeup, not a short select, frees the slot
        pytest.param(P(peak_concurrent_tasks=64), "workers", "min_heartbeat_interval", None,
                     id="short-tasks-stock-heartbeat"),
        pytest.param(P(typical_task_seconds=600, peak_concurrent_tasks=100, tasks_per_day=1000),
                     "workers", "min_heartbeat_interval", None, id="long-tasks-stock-heartbeat"),
        pytest.param(P(peak_concurrent_tasks=64), "airscale", "supervisor_exit_wakeup", True, id="exit-wakeup-on"),
        # dag count -> parsing
        pytest.param(P(dags=10), "dag_processor", "parsing_processes", 1, id="few-dags-1-parser"),
        pytest.param(P(dags=1000, parse_seconds_per_dag=0.2, control_machine={"cores": 8, "memory_gib": 16}),
                     "dag_processor", "parsing_processes", 7, id="many-dags-use-spare-cores"),
        # watched folder: unchanged files re-parsed at 2 % of a core, between a busy pass and 6 h
        pytest.param(P(dags=1000, parse_seconds_per_dag=0.2, control_machine={"cores": 8, "memory_gib": 16}),
                     "dag_processor", "min_file_process_interval", 10_000, id="rescan-at-2pct-of-a-core"),
        pytest.param(P(dags=20), "dag_processor", "min_file_process_interval", 300, id="few-dags-rescan"),
        pytest.param(P(dags=10_000, parse_seconds_per_dag=0.3), "dag_processor", "min_file_process_interval",
                     6 * 3600, id="rescan-at-most-6h"),
        pytest.param(P(dags=1, parse_seconds_per_dag=0.1), "dag_processor", "min_file_process_interval", None,
                     id="tiny-folder-stock-interval"),
        pytest.param(P(dags=3000, parse_seconds_per_dag=2.0, control_machine={"cores": 2, "memory_gib": 8}),
                     "dag_processor", "min_file_process_interval", 6 * 3600, id="slow-pass-bounds-below"),
        pytest.param(P(), "airscale", "dag_folder_watch", True, id="folder-watched"),
        pytest.param(P(), "dag_processor", "refresh_interval", 600, id="watched-folder-listed-rarely"),
        pytest.param(P(parse_seconds_per_dag=20), "dag_processor", "dag_file_processor_timeout", 100,
                     id="slow-files-longer-timeout"),
        # many DAGs x burstiness -> dag runs per loop
        pytest.param(P(dags=2000, burstiness=5), "scheduler", "max_dagruns_to_create_per_loop", 50, id="runs-created-capped"),
        pytest.param(P(dags=500, burstiness=5), "scheduler", "max_dagruns_per_loop_to_schedule", 100, id="runs-scheduled"),
        # pools
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=200, tasks_per_day=100_000),
                     "pool", "default_pool", 400, id="pool-2-per-slot"),
        pytest.param(P(peak_concurrent_tasks=8), "pool", "default_pool", 128, id="pool-never-below-stock"),
        # PostgreSQL
        pytest.param(P(database_machine={"cores": 4, "memory_gib": 16}), "postgresql", "shared_buffers", "4096MB",
                     id="shared-buffers-quarter"),
        pytest.param(P(database_machine={"cores": 4, "memory_gib": 64}), "postgresql", "shared_buffers", "8192MB",
                     id="shared-buffers-capped-8g"),
        pytest.param(P(database_machine={"cores": 4, "memory_gib": 16}), "postgresql", "effective_cache_size",
                     "12288MB", id="cache-three-quarters"),
        pytest.param(P(peak_concurrent_tasks=8, typical_task_seconds=1), "postgresql", "max_connections", 100,
                     id="max-connections-floor"),
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=200, tasks_per_day=100_000, schedulers=2),
                     "postgresql", "max_connections", 360, id="max-connections-count-clients"),
        pytest.param(P(tasks_per_day=1000, peak_concurrent_tasks=32), "postgresql", "autovacuum_vacuum_scale_factor",
                     None, id="quiet-db-stock-autovacuum"),
        pytest.param(P(tasks_per_day=10_000), "postgresql", "autovacuum_vacuum_scale_factor", 0.05, id="busy-db"),
        pytest.param(P(tasks_per_day=100_000, peak_concurrent_tasks=64), "postgresql",
                     "autovacuum_vacuum_scale_factor", 0.02, id="very-busy-db"),
        pytest.param(P(database_machine={"cores": 8, "memory_gib": 32}), "pgbouncer", "metadata_pool_size", 32,
                     id="pgbouncer-4-per-core"),
    ],
)
def test_setting_follows_from_inputs(profile, section, key, expected):
    assert value(plan(profile), section, key) == expected


@pytest.mark.parametrize(
    "profile, queue, expected",
    [
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=200, tasks_per_day=100_000),
                     "default", (8, 1, 25), id="fanout-200"),
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=200, tasks_per_day=2_000_000),
                     "default", (8, 3, 25), id="busy-day-more-warm-workers"),
        pytest.param(P(typical_task_seconds=1, peak_concurrent_tasks=100, tasks_per_day=100_000,
                       queues={"default": 3, "reports": 1}),
                     "reports", (8, 1, 4), id="queue-share"),
    ],
)
def test_queue_sizing(profile, queue, expected):
    q = next(q for q in plan(profile).queues if q.name == queue)
    assert (q.concurrency, q.min_workers, q.max_workers) == expected


PROFILES = [
    P(dags=d, tasks_per_day=t, peak_concurrent_tasks=pk, typical_task_seconds=dur, latency_goal_seconds=g, schedulers=s)
    for d, t, pk, dur, g, s in itertools.product(
        (1, 500, 5000), (100, 100_000), (8, 1000), (0.5, 600), (0.05, 0.3, 10), (1, 3))
    if pk >= t * dur / 86400
]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: f"d{p.dags}-t{p.tasks_per_day}-p{p.peak_concurrent_tasks}"
                         f"-s{p.typical_task_seconds}-g{p.latency_goal_seconds}-x{p.schedulers}")
def test_invariants(profile):
    p = plan(profile)
    for s in p.airflow:
        assert s.value != s.stock, f"{s.section}.{s.key} emitted although stock"
        assert (s.section, s.key) in AIRFLOW_STOCK or (s.section, s.key) in AIRSCALE_OFF
        assert s.reason
    for q in p.queues:
        assert 1 <= q.min_workers <= q.max_workers
        assert q.max_workers * q.concurrency >= profile.peak_concurrent_tasks * profile.queues[q.name] - 1e-9
    # Worker slots never exceed what the schedulers may have queued or running together.
    slots = sum(q.max_workers * q.concurrency for q in p.queues)
    parallelism = value(p, "core", "parallelism") or 32
    assert parallelism * profile.schedulers >= slots
    assert plan(profile) == p  # pure: the same input gives the same plan
    busy = value(p, "airscale", "scheduler_busy_sleep")
    if busy is not None:  # pacing only ever shortens the sleep
        assert busy < (value(p, "scheduler", "scheduler_idle_sleep_time") or 1.0)
    cache = value(p, "airscale", "worker_dag_cache_seconds")
    assert 0 < cache <= min(300, value(p, "dag_processor", "min_file_process_interval") or 30)


def test_idle_cost_matches_measurement():
    # measured on Airflow 3.3.2, 2 cores: 0.1 s sleep -> 17 % of a core while idle
    assert idle_cpu_share(0.1) == pytest.approx(0.17, abs=0.01)
    assert idle_cpu_share(1.0) < 0.03


def test_notes_name_the_bound():
    notes = plan(P(typical_task_seconds=1, peak_concurrent_tasks=8, latency_goal_seconds=0.06, schedulers=2)).notes
    assert any("CPU-bound" in n for n in notes)
    assert any("latency goal costs" in n for n in notes)
