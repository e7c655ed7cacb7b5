"""The tuning planner: `plan(profile) -> Plan`, a pure function (no I/O, no clock).

Every setting carries its value, the stock value it replaces and the reason, so `airscale plan
--explain` can show why, and a reviewer can check each rule against its inputs. Settings equal
to the stock value are not emitted: the plan is the list of deliberate departures.

The constants below come from measurements of Airflow 3.3.2 on a 2-core machine (see
/work/shared/reference/airflow-facts.md):
- `[scheduler] scheduler_idle_sleep_time` is almost all of the task-to-task gap in a chain:
  1 s -> 1.04 s gaps, 0.1 s -> 0.15 s gaps at 17 % of a core while idle, 0.01 s -> 0.10 s at
  52 %. So gap ~= sleep + 0.05 s, and one idle loop costs ~0.02 CPU-seconds.
- `[workers] min_heartbeat_interval` (5 s) is how long the task supervisor may wait in
  `select` before noticing its task ended; 1 s raised fan-out throughput 1.4x. The exit wakeup
  (airscale.runtime.exit_wakeup) now ends that wait at the exit, so the interval stays stock:
  at 1 s, an api-server slowed by a fault made every running task heartbeat more, which slowed
  it further (see the heartbeat note at `supervisor_exit_wakeup`).
- Trivial tasks are CPU-bound on their start-up (a supervisor and a task process are forked
  for each): past ~4 slots per core more concurrency does not help.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from airscale.spec.workload import WorkloadProfile
from airscale.tuning.autoscaling import IDLE_SLOT_MIB, RUNNING_TASK_MIB, WORKER_PARENT_MIB

# --- measured constants (see module docstring) -----------------------------------------------
CHAIN_OVERHEAD_S = 0.05  # gap left when the scheduler does not sleep at all
IDLE_LOOP_CPU_S = 0.02  # CPU seconds of one scheduler loop with nothing to do
MIN_IDLE_SLEEP_S = 0.05
SHORT_TASK_S = 10.0  # below this a task's own start-up dominates its CPU time
SLOTS_PER_CORE_SHORT = 4
SLOTS_PER_CORE_LONG = 8
# A busy slot (pool process + task process) and a worker's own processes, PSS measured on this
# machine (tuning/autoscaling.py says how), rounded up.
SLOT_MEMORY_GIB = round((IDLE_SLOT_MIB + RUNNING_TASK_MIB) / 1024 + 0.005, 2)
WORKER_BASE_MEMORY_GIB = round(WORKER_PARENT_MIB / 1024 + 0.005, 2)
PARSE_SHARE = 0.25  # parsing may use at most this share of the dag-processor's time
# With the folder watched (airscale.runtime.dag_watch) edits are parsed on their event; re-parsing
# unchanged files (for DAGs built from something outside their file) may cost this share of a
# core on average, at most every MAX_RESCAN_S.
RESCAN_CORE_SHARE = 0.02
MAX_RESCAN_S = 6 * 3600
WATCHED_REFRESH_S = 600  # listing the folder: a safety net for events the watch misses
SQLALCHEMY_CONNECTIONS_PER_PROCESS = 15  # [database] sql_alchemy_pool_size 5 + max_overflow 10
ADMIN_CONNECTIONS = 10  # superuser reserve, airscale health checks, psql
BROKER_TASKS_PER_SLOT = 2  # tasks in flight per worker slot: one running, one waiting in the broker

# Airflow 3.3.2's defaults for every key the planner may set (a unit test checks them
# against the installed config.yml and the Celery provider's provider info).
AIRFLOW_STOCK: dict[tuple[str, str], Any] = {
    ("core", "parallelism"): 32,
    ("core", "max_active_tasks_per_dag"): 16,
    ("core", "default_pool_task_slot_count"): 128,
    ("scheduler", "scheduler_idle_sleep_time"): 1.0,
    ("scheduler", "max_tis_per_query"): 16,
    ("scheduler", "max_dagruns_to_create_per_loop"): 10,
    ("scheduler", "max_dagruns_per_loop_to_schedule"): 20,
    ("dag_processor", "parsing_processes"): 2,
    ("dag_processor", "min_file_process_interval"): 30,
    ("dag_processor", "refresh_interval"): 300,
    ("dag_processor", "dag_file_processor_timeout"): 50,
    ("celery", "worker_concurrency"): 16,
}

# airscale's own accelerators (airscale.runtime.airflow_entry), read from the `[airscale]` section
# of airflow.cfg: the value that leaves each one off, which is how stock Airflow behaves.
AIRSCALE_OFF: dict[tuple[str, str], Any] = {
    ("airscale", "scheduler_busy_sleep"): 0,
    ("airscale", "scheduler_hot_seconds"): None,
    ("airscale", "scheduler_busy_max_running"): None,
    ("airscale", "worker_dag_cache_seconds"): 0,
    ("airscale", "supervisor_exit_wakeup"): False,
    ("airscale", "dag_folder_watch"): False,
    ("airscale", "worker_gc_freeze"): False,
    ("airscale", "worker_warmup"): False,
    ("airscale", "scheduler_event_wakeup"): False,
    ("airscale", "scheduler_event_sleep"): None,
}
# What stock Airflow has for every key the planner may set.
STOCK: dict[tuple[str, str], Any] = {**AIRFLOW_STOCK, **AIRSCALE_OFF}
BUSY_SLEEP_S = 0.02  # the paced scheduler's sleep right after activity
HOT_SECONDS = 3.0  # how long after activity it stays at BUSY_SLEEP_S
BUSY_MAX_RUNNING = 4  # ... while at most this many tasks run
# With event wake-up the idle sleep bounds only what sends no event (a retry delay running out,
# a lost notification): as long as the scheduler's own heartbeat interval (scheduler_heartbeat_sec).
EVENT_SLEEP_S = 5.0
WORKER_DAG_CACHE_MAX_S = 300  # the oldest a worker's parse of a DAG file may be

# PostgreSQL 15 defaults of the keys the planner may set.
POSTGRES_STOCK: dict[str, Any] = {
    "max_connections": 100,
    "shared_buffers": "128MB",
    "effective_cache_size": "4GB",
    "work_mem": "4MB",
    "maintenance_work_mem": "64MB",
    "autovacuum_naptime": "1min",
    "autovacuum_vacuum_scale_factor": 0.2,
    "autovacuum_analyze_scale_factor": 0.1,
    "autovacuum_vacuum_cost_limit": -1,
}

# The Airflow Helm chart's PgBouncer defaults.
PGBOUNCER_STOCK: dict[str, Any] = {
    "pool_mode": "transaction",
    "metadata_pool_size": 10,
    "result_backend_pool_size": 5,
    "max_client_conn": 100,
}


@dataclass(frozen=True)
class Setting:
    section: str  # Airflow config section, or "postgresql" / "pgbouncer" / "pool"
    key: str
    value: Any
    reason: str
    stock: Any = None


@dataclass(frozen=True)
class QueuePlan:
    name: str
    concurrency: int
    min_workers: int
    max_workers: int
    reason: str


@dataclass(frozen=True)
class Plan:
    airflow: tuple[Setting, ...]
    queues: tuple[QueuePlan, ...]
    pools: tuple[Setting, ...]
    postgres: tuple[Setting, ...]
    pgbouncer: tuple[Setting, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def airflow_settings(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for s in self.airflow:
            out.setdefault(s.section, {})[s.key] = s.value
        return out

    def postgres_settings(self) -> dict[str, Any]:
        return {s.key: s.value for s in self.postgres}

    def get(self, section: str, key: str) -> Setting | None:
        for s in (*self.airflow, *self.pools, *self.postgres, *self.pgbouncer):
            if s.section == section and s.key == key:
                return s
        return None


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def _mb(gib: float) -> str:
    return f"{int(gib * 1024)}MB"


# --- the rules ---------------------------------------------------------------------------------
def idle_sleep(profile: WorkloadProfile) -> float:
    return round(_clamp(profile.latency_goal_seconds - CHAIN_OVERHEAD_S, MIN_IDLE_SLEEP_S, 1.0), 2)


def idle_cpu_share(sleep: float) -> float:
    """Share of one core a quiet scheduler uses when it sleeps `sleep` s between loops."""
    return IDLE_LOOP_CPU_S / (IDLE_LOOP_CPU_S + sleep)


def worker_concurrency(profile: WorkloadProfile) -> tuple[int, str]:
    m = profile.worker_machine
    short = profile.typical_task_seconds < SHORT_TASK_S
    per_core = SLOTS_PER_CORE_SHORT if short else SLOTS_PER_CORE_LONG
    by_cpu = m.cores * per_core
    by_memory = max(1, math.floor((m.memory_gib - WORKER_BASE_MEMORY_GIB) / SLOT_MEMORY_GIB))
    c = max(1, min(by_cpu, by_memory))
    why = (
        f"{per_core} slots per core x {m.cores} cores = {by_cpu} "
        + ("(tasks under 10 s are CPU-bound on their start-up: a supervisor and a task process "
           "are forked for each, so more slots only queue for the CPU)"
           if short else "(long tasks mostly wait on I/O, so a core can host more of them)")
        + f"; memory allows {by_memory} at {SLOT_MEMORY_GIB} GiB a slot"
        + (" (the limit)" if by_memory < by_cpu else "")
    )
    return c, why


def plan(profile: WorkloadProfile) -> Plan:
    airflow: list[Setting] = []
    notes: list[str] = []

    def set_airflow(section: str, key: str, value: Any, reason: str) -> None:
        stock = STOCK[(section, key)]
        if value != stock:
            airflow.append(Setting(section, key, value, reason, stock))

    # Workers per queue ------------------------------------------------------------------------
    conc, conc_why = worker_concurrency(profile)
    queues: list[QueuePlan] = []
    avg = profile.average_concurrent_tasks
    for name, share in profile.queues.items():
        peak_q = profile.peak_concurrent_tasks * share
        avg_q = avg * share
        max_w = max(1, math.ceil(peak_q / conc))
        min_w = min(max_w, max(1, math.ceil(avg_q / conc)))
        queues.append(QueuePlan(
            name, conc, min_w, max_w,
            f"{share:.0%} of the tasks: peak {peak_q:.0f} running / {conc} slots -> {max_w} workers "
            f"at most; the day's average {avg_q:.1f} running -> {min_w} always up, the autoscaler "
            f"adds the rest in bursts. Concurrency: {conc_why}",
        ))
    total_slots = sum(q.max_workers * q.concurrency for q in queues)

    # Scheduler --------------------------------------------------------------------------------
    sleep = idle_sleep(profile)
    set_airflow(
        "scheduler", "scheduler_idle_sleep_time", sleep,
        f"the scheduler sleeps this long after a loop with nothing to do, which is almost all of "
        f"the gap between chained tasks (measured: 1 s -> 1.04 s gaps, 0.1 s -> 0.15 s). For the "
        f"latency goal of {profile.latency_goal_seconds} s: gap ~= {sleep + CHAIN_OVERHEAD_S:.2f} s; "
        f"cost while quiet ~= {idle_cpu_share(sleep):.0%} of a core per scheduler",
    )
    # Two tasks per slot in flight: the broker holds the next task for every slot, so a slot
    # that frees starts one at once instead of waiting for the scheduler's round trip
    # (worker -> result backend -> scheduler -> broker). Never below stock.
    in_flight = BROKER_TASKS_PER_SLOT * total_slots
    parallelism = max(32, math.ceil(in_flight / profile.schedulers))
    set_airflow(
        "core", "parallelism", parallelism,
        f"each scheduler queues up to `parallelism` tasks: {BROKER_TASKS_PER_SLOT} per worker slot "
        f"({total_slots} slots at most) / {profile.schedulers} scheduler(s), at least the stock 32. "
        "A free slot then takes the next task from the broker at once instead of waiting for a "
        "scheduler loop, and the schedulers together do not flood the broker (each has its own "
        "parallelism: two at stock queue 64)",
    )
    per_dag = max(16, min(profile.peak_concurrent_tasks, total_slots))
    set_airflow(
        "core", "max_active_tasks_per_dag", per_dag,
        f"a single DAG's fan-out may use up to the peak of {profile.peak_concurrent_tasks} "
        f"running tasks (capped at the {total_slots} slots) instead of 16",
    )
    tis = int(_clamp(parallelism, 16, 512))
    set_airflow(
        "scheduler", "max_tis_per_query", tis,
        f"one scheduler loop may queue up to this many tasks; at 16 a fan-out into "
        f"{parallelism} free slots takes {math.ceil(parallelism / 16)} loops. Capped at 512: a "
        f"scheduler examines about 500-1000 task instances/s (#31185)",
    )
    runs_rate = profile.dags * profile.burstiness
    set_airflow(
        "scheduler", "max_dagruns_to_create_per_loop", int(_clamp(math.ceil(runs_rate / 50), 10, 50)),
        f"{profile.dags} DAGs with burstiness {profile.burstiness:g}: runs due at the same moment "
        f"are created in fewer loops (1 per 50 DAG x burstiness, 10-50)",
    )
    set_airflow(
        "scheduler", "max_dagruns_per_loop_to_schedule", int(_clamp(math.ceil(runs_rate / 25), 20, 100)),
        "active runs examined per loop: enough for the concurrent runs of a burst (1 per 25 DAG x "
        "burstiness, 20-100); more lengthens every loop",
    )
    # Pacing (airscale.runtime.scheduler_pacing): one idle sleep cannot be both short for a
    # chain of short tasks and cheap for a quiet scheduler, so it becomes two.
    if profile.typical_task_seconds < SHORT_TASK_S and BUSY_SLEEP_S < sleep:
        set_airflow(
            "airscale", "scheduler_busy_sleep", BUSY_SLEEP_S,
            f"for {HOT_SECONDS:g} s after the scheduler queued a task or saw one start or end, and "
            f"while at most {BUSY_MAX_RUNNING} run, it sleeps {BUSY_SLEEP_S} s instead of {sleep} s "
            f"after an idle loop: tasks of ~{profile.typical_task_seconds:g} s have their successors "
            f"queued within a loop of ending (measured on a 40-task chain: gap 0.27 -> 0.09 s). "
            f"Quiet, it sleeps {sleep} s (cost above); hot, ~{idle_cpu_share(BUSY_SLEEP_S):.0%} of a core",
        )
        set_airflow("airscale", "scheduler_hot_seconds", HOT_SECONDS,
                    "how long the scheduler stays at the short sleep after activity")
        set_airflow("airscale", "scheduler_busy_max_running", BUSY_MAX_RUNNING,
                    "with more tasks running the worker slots, not the scheduler's polling, decide when "
                    "the next task starts, and loops are rarely idle: the CPU goes to the tasks")

    # Event wake-up (airscale.runtime.scheduler_wakeup): the database says when there is work,
    # so the scheduler need not poll for it; pacing and the idle sleep above stay the fallback
    # while its LISTEN connection is down, or when this is turned off.
    set_airflow(
        "airscale", "scheduler_event_wakeup", True,
        "the scheduler waits on PostgreSQL notifications (a task ended or was deferred, a deferred "
        "task resumed, a run was created or cleared, a DAG unpaused) instead of polling: its next "
        "loop starts as soon as the change is committed, and a quiet scheduler loops only for its "
        "timers",
    )
    set_airflow(
        "airscale", "scheduler_event_sleep", EVENT_SLEEP_S,
        f"the longest a quiet scheduler waits for a notification (~{idle_cpu_share(EVENT_SLEEP_S):.1%} of a core "
        f"instead of {idle_cpu_share(sleep):.0%}); as long as its own heartbeat interval. Changes that send "
        f"none (a retry delay running out, a lost notification) wait at most this; a cron run due sooner "
        f"ends the wait",
    )

    # DAG processor ----------------------------------------------------------------------------
    parse_total = profile.dags * profile.parse_seconds_per_dag
    cores_left = max(1, profile.control_machine.cores - profile.schedulers)
    wanted = math.ceil(parse_total / (30 * PARSE_SHARE))
    procs = int(_clamp(wanted, 1, max(1, min(16, cores_left))))
    set_airflow(
        "dag_processor", "parsing_processes", procs,
        f"{profile.dags} files x {profile.parse_seconds_per_dag} s = {parse_total:.0f} s of parsing a "
        f"pass; {wanted} process(es) would keep a 30 s pass under {PARSE_SHARE:.0%} busy, limited "
        f"to the {cores_left} core(s) the control machine has beside {profile.schedulers} scheduler(s)",
    )
    pass_s = parse_total / procs
    busy_interval = int(_clamp(math.ceil(pass_s / PARSE_SHARE), 30, 900))
    interval = int(_clamp(math.ceil(parse_total / RESCAN_CORE_SHARE), busy_interval, MAX_RESCAN_S))
    set_airflow(
        "airscale", "dag_folder_watch", True,
        "the dag-processor watches the DAG folder (inotify): an edited file is parsed at its next "
        "loop (within a second) and an added or deleted one makes it list the folder at once, "
        "instead of waiting for a re-parse of every file or the next listing",
    )
    set_airflow(
        "dag_processor", "min_file_process_interval", interval,
        f"edits arrive through the watch, so this is only how often an unchanged file is parsed "
        f"again (what a DAG built from something outside its file, a Variable or a config file, "
        f"waits for). {profile.dags} files x {profile.parse_seconds_per_dag} s = {parse_total:.0f} s "
        f"of parsing a pass; every {interval} s that is "
        f"{parse_total / interval:.1%} of a core (aim {RESCAN_CORE_SHARE:.0%}, between the "
        f"{busy_interval} s that keep a pass under {PARSE_SHARE:.0%} of the parsing processes' time "
        f"and {MAX_RESCAN_S // 3600} h)",
    )
    set_airflow(
        "dag_processor", "refresh_interval", WATCHED_REFRESH_S,
        "new and deleted files make the dag-processor list the folder at once through the watch; "
        f"the listing every {WATCHED_REFRESH_S} s is a safety net for events a watch can miss "
        "(a network file system)",
    )
    if profile.parse_seconds_per_dag * 5 > 50:
        set_airflow(
            "dag_processor", "dag_file_processor_timeout", int(math.ceil(profile.parse_seconds_per_dag * 5)),
            "5x the typical parse time, so a slow file is not killed half-parsed",
        )
    if parse_total / procs > 900:
        notes.append(
            f"parsing {profile.dags} DAG files takes ~{pass_s:.0f} s per pass even with {procs} "
            "processes: give the dag-processor more cores or make DAG files cheaper to import"
        )

    # Celery -----------------------------------------------------------------------------------
    set_airflow("celery", "worker_concurrency", conc, conc_why)
    set_airflow(
        "airscale", "supervisor_exit_wakeup", True,
        "the task supervisor reaps its task process after a select of up to "
        "min_heartbeat_interval; when the process's sockets close before it can be reaped, that "
        "select sleeps the whole interval with the slot held (measured: 30 % of a fan-out's "
        "trivial tasks held it 1.0-1.5 s instead of 0.1-0.6 s). A pidfd of the task process in "
        "the same select wakes it at the exit. So min_heartbeat_interval stays at stock 5 s: "
        "at 1 s a running task heartbeats every second, and in the ha soak, once a fault slowed "
        "the api-servers, tasks that took 6 s instead of 0.6 s sent 6 heartbeats instead of 1, "
        "which kept the api-servers at 100 % and the tasks slow until the end of the run",
    )
    cache_s = min(WORKER_DAG_CACHE_MAX_S, interval)
    set_airflow(
        "airscale", "worker_dag_cache_seconds", cache_s,
        "each Celery pool process parses a DAG file once and forks its task processes from that "
        "parse, instead of every task process importing the file again (measured: 48 % of a "
        "worker's CPU in a 200-task fan-out). A parse is used while the file is unchanged and at "
        f"most {cache_s} s old (top-level code of a DAG file then runs no less often than on the "
        "dag-processor, at most every min_file_process_interval)",
    )

    set_airflow(
        "airscale", "worker_warmup", True,
        "the worker's main process runs a task's parse and Execution API client once before its "
        "pool forks, so pool processes share those pages instead of each copying them at its "
        "first task (measured on a fork of a worker: 11 instead of 24 MiB private after the "
        "first task's code paths); each pool process then runs them once as it starts (11 ms), "
        "so a worker's memory does not step up when a burst first reaches an idle slot",
    )

    # `[airscale] worker_gc_freeze` (airscale.runtime.worker_gc) is not planned: measured with and
    # without it in the same conditions, a worker with 8 busy slots took 739 and 743 MiB (PSS),
    # 11.1 and 11.0 tasks per GiB (BENCHMARKS.md); it stays a switch, off.

    # Pools ------------------------------------------------------------------------------------
    pool_slots = max(128, BROKER_TASKS_PER_SLOT * total_slots)
    pools = (
        Setting(
            "pool", "default_pool", pool_slots,
            f"pool slots count queued and running tasks: {BROKER_TASKS_PER_SLOT} per worker slot "
            f"({total_slots}) as for parallelism, at least the stock 128; a smaller pool leaves "
            "workers idle", 128,
        ),
    )
    set_airflow(
        "core", "default_pool_task_slot_count", pool_slots,
        "size of default_pool when the metadata database is created (see pools)",
    )

    # PostgreSQL ---------------------------------------------------------------------------------
    db = profile.database_machine
    airflow_processes = profile.schedulers + 3  # + api-server, dag-processor, triggerer
    clients = (
        airflow_processes * SQLALCHEMY_CONNECTIONS_PER_PROCESS
        + total_slots  # each Celery pool process keeps a result-backend connection
        + profile.schedulers  # the executors reading task states from the result backend
        + ADMIN_CONNECTIONS
    )
    max_conn = max(100, int(math.ceil(clients * 1.25 / 10) * 10))
    pg: list[Setting] = [
        Setting(
            "postgresql", "max_connections", max_conn,
            f"{airflow_processes} Airflow processes x {SQLALCHEMY_CONNECTIONS_PER_PROCESS} (pool 5 + "
            f"overflow 10) + {total_slots} Celery result-backend connections + "
            f"{profile.schedulers} executor(s) + {ADMIN_CONNECTIONS} reserve = {clients}, +25 % "
            "headroom (with PgBouncer in front, the pool sizes below bound the server side)",
            POSTGRES_STOCK["max_connections"],
        )
    ]
    sb = _clamp(db.memory_gib * 0.25, 0.125, 8.0)
    pg.append(Setting("postgresql", "shared_buffers", _mb(sb),
                      f"25 % of the database machine's {db.memory_gib:g} GiB (at most 8 GiB): the "
                      "hot Airflow tables (task_instance, dag_run, job) stay in PostgreSQL's cache",
                      POSTGRES_STOCK["shared_buffers"]))
    pg.append(Setting("postgresql", "effective_cache_size", _mb(db.memory_gib * 0.75),
                      "75 % of memory: what the planner may assume the OS caches; favours index scans",
                      POSTGRES_STOCK["effective_cache_size"]))
    wm_gib = _clamp((db.memory_gib - sb) / (max_conn * 2), 4 / 1024, 64 / 1024)
    pg.append(Setting("postgresql", "work_mem", _mb(wm_gib),
                      f"memory left after shared_buffers shared by {max_conn} connections with up to two "
                      "sorts each (4-64 MB): Airflow's queries are small, so this mostly guards "
                      "against running out of memory",
                      POSTGRES_STOCK["work_mem"]))
    pg.append(Setting("postgresql", "maintenance_work_mem", _mb(_clamp(db.memory_gib * 0.05, 0.0625, 1.0)),
                      "5 % of memory (64 MB-1 GB): faster VACUUM and index builds after `airscale db clean`",
                      POSTGRES_STOCK["maintenance_work_mem"]))
    if profile.tasks_per_day >= 5_000:
        busy = profile.tasks_per_day >= 50_000
        vsf, asf = (0.02, 0.01) if busy else (0.05, 0.02)
        pg.append(Setting("postgresql", "autovacuum_vacuum_scale_factor", vsf,
                          f"{profile.tasks_per_day} tasks a day update task_instance and dag_run rows "
                          "several times each: vacuum after this share of a table is dead rather than "
                          "20 %, so hot tables stay small",
                          POSTGRES_STOCK["autovacuum_vacuum_scale_factor"]))
        pg.append(Setting("postgresql", "autovacuum_analyze_scale_factor", asf,
                          "keep planner statistics current as the task tables grow by the day",
                          POSTGRES_STOCK["autovacuum_analyze_scale_factor"]))
        pg.append(Setting("postgresql", "autovacuum_naptime", "15s" if busy else "30s",
                          "check tables for dead rows more often than every minute",
                          POSTGRES_STOCK["autovacuum_naptime"]))
        if busy:
            pg.append(Setting("postgresql", "autovacuum_vacuum_cost_limit", 2000,
                              "let autovacuum do 10x the stock I/O per round so it keeps up with "
                              f"{profile.tasks_per_day} tasks a day",
                              POSTGRES_STOCK["autovacuum_vacuum_cost_limit"]))

    # PgBouncer ----------------------------------------------------------------------------------
    meta_pool = max(10, db.cores * 4)
    bouncer = (
        Setting("pgbouncer", "pool_mode", "transaction",
                "Airflow holds sessions idle between loops; transaction pooling shares server "
                "connections between them (the Helm chart's choice)", PGBOUNCER_STOCK["pool_mode"]),
        Setting("pgbouncer", "metadata_pool_size", meta_pool,
                f"about 4 busy connections per database core ({db.cores}) keep PostgreSQL saturated "
                "without thrashing; more only queue inside PostgreSQL", PGBOUNCER_STOCK["metadata_pool_size"]),
        Setting("pgbouncer", "result_backend_pool_size", max(5, db.cores * 2),
                "result-backend writes are one short statement per task end", PGBOUNCER_STOCK["result_backend_pool_size"]),
        Setting("pgbouncer", "max_client_conn", max(100, int(math.ceil(clients * 1.25))),
                f"every client connection above ({clients}) with 25 % headroom",
                PGBOUNCER_STOCK["max_client_conn"]),
    )

    # Notes: limits no setting removes ----------------------------------------------------------
    if profile.worker_machine.cores <= 2 and profile.typical_task_seconds < SHORT_TASK_S:
        notes.append(
            "workers with 2 cores running short tasks are CPU-bound (measured ~99 % busy): "
            "throughput grows with cores or workers, not with concurrency"
        )
    idle_total = idle_cpu_share(sleep) * profile.schedulers
    if idle_total > 0.10:
        notes.append(
            f"the latency goal costs {idle_total:.0%} of a core while the cluster is quiet "
            f"({profile.schedulers} scheduler(s) x {idle_cpu_share(sleep):.0%}); raise "
            "latency_goal_seconds to lower it"
        )
    if profile.peak_start_rate > 50:
        notes.append(
            f"peak of {profile.peak_start_rate:.0f} task starts/s: one scheduler handles a few "
            "hundred task instances a second (#31185); consider more schedulers"
        )
    return Plan(tuple(airflow), tuple(queues), pools, tuple(pg), bouncer, tuple(notes))
