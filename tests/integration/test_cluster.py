"""The foundation against real processes: PostgreSQL, Redis, api-server, two schedulers,
dag-processor, triggerer and two Celery workers, brought up by the real CLI: the shared
`default` cluster of conftest.py.

Each test stands on its own: the runs of `it_layers` that several tests read are made once for
the module by the `layers_runs` fixture, and the tests that kill or stop components leave the
cluster running and healthy.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from airscale.runtime import forkserver
from airscale.runtime.airflow_config import api_url
from airscale.runtime.procs import cluster_pids
from airscale.workload.client import AirflowClient
from tests.conftest import airscale
from tests.integration.conftest import log_mark, log_since

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RUNS = 3


@pytest.fixture
def spec_path(healthy_default):
    return healthy_default.spec_path


@pytest.fixture
def cluster(healthy_default):
    return healthy_default.cluster


@pytest.fixture(scope="module")
def layers_runs(default_cluster):
    """RUNS runs of it_layers, triggered at once and followed to their end: run id -> result."""
    cluster = default_cluster.cluster
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("it_layers")
    client.unpause("it_layers")
    run_ids = [client.trigger("it_layers") for _ in range(RUNS)]
    try:
        return {run_id: client.wait_for_run("it_layers", run_id, timeout=420) for run_id in run_ids}
    finally:
        client.close()


def status_rows(spec_path) -> dict[str, dict]:
    proc = airscale("status", "--json", "-s", str(spec_path), check=True)
    return {r["component"]: r for r in json.loads(proc.stdout)}


@pytest.mark.timeout(300)
def test_trigger_and_creds_print_json_for_scripts(spec_path, cluster):
    proc = airscale("trigger", "observe_ok", "--json", "-s", str(spec_path), timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(proc.stdout)  # stdout is the JSON document alone
    assert run["dag_id"] == "observe_ok" and run["state"] == "success", run
    assert [t["task_id"] for t in run["tasks"]] == ["add", "one"], run
    assert all(t["state"] == "success" and t["try_number"] == 1 for t in run["tasks"]), run
    creds = json.loads(airscale("creds", "--json", "-s", str(spec_path), check=True).stdout)
    assert creds["url"].endswith(f":{cluster.spec.ports.api}") and creds["password"], creds


def test_every_started_component_is_healthy(spec_path):
    rows = status_rows(spec_path)
    # Two api-servers behind HAProxy (api_server.count defaults to 2 in the scale profile).
    expected = {"postgres", "redis", "api-server-1", "api-server-2", "api-proxy", "scheduler-1", "scheduler-2",
                "dag-processor", "triggerer", "worker-forkserver", "worker-default-1", "worker-default-2"}
    for name in expected:
        assert rows[name]["state"] == "RUNNING", rows[name]
        assert rows[name]["healthy"], rows[name]
        assert psutil.pid_exists(rows[name]["pid"])
    assert rows["worker-default-3"]["state"] == "STANDBY"


def test_workers_are_forked_by_the_fork_server(spec_path, cluster):
    """Warm start: each worker process is the fork server's child, stood in for by its client."""
    rows = status_rows(spec_path)
    sock = cluster.layout.forkserver_socket
    for name in ("worker-default-1", "worker-default-2"):
        client = rows[name]["pid"]
        worker = forkserver.forked_pid(sock, client)
        assert worker is not None, f"{name} was started cold: read its log"
        assert psutil.Process(worker).ppid() == rows["worker-forkserver"]["pid"]
        assert worker in {p.pid for p in forkserver.family(client, sock)}


def test_dag_runs_on_two_celery_workers(cluster, layers_runs):
    assert len(layers_runs) == RUNS
    for result in layers_runs.values():
        assert result.state == "success"
        assert len(result.tasks) == 24
    rows = cluster.query("SELECT state, hostname FROM task_instance WHERE dag_id = 'it_layers' "
                         "AND run_id = ANY(%s)", list(layers_runs))
    assert len(rows) == 24 * RUNS
    assert {state for state, _ in rows} == {"success"}
    hosts = {h.split(".")[0] for _, h in rows}
    assert hosts == {"worker-default-1", "worker-default-2"}, hosts


def test_two_schedulers_heartbeat_and_both_schedule(cluster, layers_runs):
    beats = cluster.query(
        "SELECT hostname, EXTRACT(EPOCH FROM now() - latest_heartbeat) FROM job "
        "WHERE job_type = 'SchedulerJob' AND state = 'running'",
    )
    alive = {h.split(".")[0] for h, age in beats if age < 30}
    assert alive == {"scheduler-1", "scheduler-2"}, beats
    queued_by = cluster.query(
        "SELECT DISTINCT j.hostname FROM task_instance ti JOIN job j ON j.id = ti.queued_by_job_id "
        "WHERE ti.dag_id = 'it_layers' AND ti.run_id = ANY(%s)", list(layers_runs),
    )
    assert {h.split(".")[0] for (h,) in queued_by} == {"scheduler-1", "scheduler-2"}, queued_by


def test_secrets_are_private_and_never_shown(cluster):
    layout = cluster.layout
    for f in (layout.secrets_file, layout.airflow_cfg, layout.redis_conf, layout.admin_passwords):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    ps = subprocess.run(["ps", "auxeww"], capture_output=True, text=True).stdout
    logs = "".join(p.read_text(errors="replace") for p in layout.logs.rglob("*") if p.is_file())
    for value in cluster.secrets().values():
        assert value not in ps
        assert value not in logs


NOBODY_READS = """
import os, sys
found = []
for top, dirs, files in os.walk(sys.argv[1]):
    for f in files:
        path = os.path.join(top, f)
        try:
            with open(path, "rb") as fh:
                fh.read(1)
            found.append(path)
        except OSError:
            pass
print("\\n".join(found))
"""


def test_another_local_account_reads_no_data_file(cluster):
    """As `nobody`: not one file of the running cluster's data folder opens (Redis' AOF and
    RDB, logs, configs, Prometheus' data, alerts), only the folder marker saying whose it is."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another account")
    # The system's Python: the project's may live under root's home, which `nobody` cannot enter.
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)
    if python is None:
        pytest.skip("no system python3 for the unprivileged account")
    proc = subprocess.run([python, "-c", NOBODY_READS, str(cluster.layout.root)], capture_output=True,
                          text=True, timeout=60, user=65534, group=65534, extra_groups=[], cwd="/")
    assert proc.returncode == 0, proc.stderr
    readable = [p for p in proc.stdout.split() if Path(p).name != ".airscale-cluster"]
    assert not readable, readable
    assert list(cluster.layout.redis_dir.iterdir()), "the check must see Redis' files exist"


def test_killed_worker_is_restarted_and_counted(spec_path, cluster):
    before = status_rows(spec_path)["worker-default-1"]
    mark = log_mark(cluster, "restart-listener")
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        row = status_rows(spec_path)["worker-default-1"]
        if row["pid"] not in (None, before["pid"]) and row["state"] == "RUNNING" and row["healthy"]:
            break
        assert time.monotonic() < deadline, row
        time.sleep(2)
    assert row["restarts"] == before["restarts"] + 1
    log = log_since(cluster, "restart-listener", mark)
    assert "worker-default-1: exited with status" in log and "worker-default-1: started again" in log, log


def test_down_leaves_nothing_and_up_keeps_history(spec_path, cluster, layers_runs, healthy_default):
    """Leaves the cluster up and healthy, as it found it."""
    rows = status_rows(spec_path)
    pids = [r["pid"] for r in rows.values() if r["pid"]]
    pids += cluster_pids(cluster.cluster_id())
    pids.append(cluster.supervisor.pid())
    assert len(pids) >= 10
    proc = airscale("down", "-s", str(spec_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    still = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert still == []
    assert cluster_pids(cluster.cluster_id()) == []
    assert cluster.layout.pgdata.exists(), "down keeps the data"

    proc = airscale("up", "-s", str(spec_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "admin password (shown once" not in proc.stdout
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    runs = [r for r in client.dag_runs("it_layers") if r["dag_run_id"] in layers_runs]
    assert len(runs) == RUNS and {r["state"] for r in runs} == {"success"}
    healthy_default.wait_healthy()


WATCHED_DAG = '''
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1), description="{version}")
def watched():
    @task
    def one():
        return 1

    one()


watched()
'''


@pytest.mark.timeout(300)
def test_dag_files_are_parsed_when_they_change(cluster):
    """The dag-processor watches the folder (airscale.runtime.dag_watch): a new file's DAG, an
    edit and a deletion reach the database long before the 600 s listing or the re-parse
    interval of unchanged files would bring them (the 30 s bound leaves room for a loaded host;
    `make bench` measures the delay)."""
    dag_id = f"it_watch_{os.getpid()}"
    path = cluster.spec.dags_path / f"{dag_id}.py"
    settings = cluster.layout.airflow_cfg.read_text()
    assert "dag_folder_watch = True" in settings and "refresh_interval = 600" in settings, settings
    log = cluster.layout.log_of("dag-processor").read_text()
    assert "airscale: parsing DAG files on change" in log

    def row():
        rows = cluster.query("SELECT description, is_stale FROM dag WHERE dag_id = %s", dag_id)
        return rows[0] if rows else None

    def until(expected, what, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if row() == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{what}: after {seconds} s the dag table says {row()}, expected {expected}")

    try:
        path.write_text(WATCHED_DAG.format(dag_id=dag_id, version="v1"))
        until(("v1", False), "a new DAG file")
        # Edited at once: Airflow does not store a DAG again within 30 s of its last write
        # ([core] min_serialized_dag_update_interval), so the watch parses it once more after.
        path.write_text(WATCHED_DAG.format(dag_id=dag_id, version="v2"))
        until(("v2", False), "an edit inside Airflow's 30 s write throttle", seconds=75)
        time.sleep(32)
        path.write_text(WATCHED_DAG.format(dag_id=dag_id, version="v3"))
        until(("v3", False), "an edit past the throttle")
        path.unlink()
        until(("v3", True), "a deleted DAG file")
    finally:
        path.unlink(missing_ok=True)


CHAIN_DAG = '''
import pendulum
from airflow.sdk import chain, dag, task


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def woken():
    @task
    def step():
        return 1

    chain(*[step.override(task_id=f"t{{i}}")() for i in range(6)])


woken()
'''


@pytest.mark.timeout(300)
def test_schedulers_wake_on_database_events(cluster):
    """Event wake-up (airscale.runtime.scheduler_wakeup): both schedulers LISTEN on the metadata
    database and the plan's triggers NOTIFY them, so a chain's next task is queued right after
    the previous one ends although a quiet scheduler waits up to 5 s between loops (without the
    events, the gaps would be spread over the loop's timers, around a second and more)."""
    settings = cluster.layout.airflow_cfg.read_text()
    assert "scheduler_event_wakeup = True" in settings and "scheduler_event_sleep = 5.0" in settings, settings
    triggers = {t for (t,) in cluster.query("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'airscale_wake_%%'")}
    assert triggers == {"airscale_wake_task_instance", "airscale_wake_dag_run_created", "airscale_wake_dag_run_queued",
                        "airscale_wake_dag_unpaused", "airscale_wake_asset_queue"}, triggers
    listening = cluster.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'airscale-wakeup'")[0][0]
    assert listening == 2, "each of the two schedulers holds a LISTEN connection"
    for name in ("scheduler-1", "scheduler-2"):
        assert "airscale event wake-up: the scheduler waits up to 5.0 s" in cluster.layout.log_of(name).read_text()

    dag_id = f"it_woken_{os.getpid()}"
    path = cluster.spec.dags_path / f"{dag_id}.py"
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    try:
        path.write_text(CHAIN_DAG.format(dag_id=dag_id))
        client.wait_for_dag(dag_id, timeout=120)
        client.unpause(dag_id)
        run_id = client.trigger(dag_id)
        assert client.wait_for_run(dag_id, run_id, timeout=180).state == "success"
        rows = cluster.query(
            "SELECT EXTRACT(EPOCH FROM queued_dttm - lag(end_date) OVER (ORDER BY start_date)) FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY start_date", dag_id, run_id)
        gaps = sorted(float(g) for (g,) in rows[1:])
        assert len(gaps) == 5, rows
        # From a task's end to its successor queued: one scheduler loop after the notification.
        assert gaps[2] < 1.0 and gaps[-1] < 2.5, f"end -> next queued gaps, s: {gaps}"
    finally:
        path.unlink(missing_ok=True)
        client.close()


def test_workers_warm_before_their_pool_forks(cluster):
    """airscale.runtime.worker_warmup: each worker's main process parsed its warm-up DAG with
    Airflow's parser, built the Execution API client and froze them before forking its pool."""
    workers = [n for n, i in cluster.supervisor.infos().items()
               if n.startswith("worker-") and n != "worker-forkserver" and i.get("statename") == "RUNNING"]
    assert workers
    for name in workers:
        log = cluster.layout.log_of(name).read_text(errors="replace")
        assert "airscale: worker warmed before its pool forks (parse, client, supervisor" in log, name


def test_api_servers_build_the_execution_api_before_they_listen(cluster):
    """airscale.runtime.api_warmup: Cadwyn would build the Execution API's versioned routes at
    its first request, blocking the whole api-server for 5 s (lightly loaded host) to 33 s (the soak);
    built at start, every instance's first Execution API request is answered like any other."""
    import re

    from airscale.runtime import api_servers

    import httpx

    names = api_servers.instance_names(cluster.spec)
    for i, name in enumerate(names, start=1):
        port = cluster.spec.ports.api_instance(i) if len(names) > 1 else cluster.spec.ports.api
        assert httpx.get(f"http://127.0.0.1:{port}/execution/health", timeout=30).status_code == 200
    time.sleep(1)  # the access log line follows the answer
    for name in names:
        log = cluster.layout.log_of(name).read_text()
        assert "airscale: Execution API routes built at start" in log, name
        first = re.search(r"duration_us=(\d+) .*?path=/execution/", log)
        assert first, f"{name} served no Execution API request"
        assert int(first.group(1)) < 2_000_000, f"{name}: first Execution API request took {first.group(1)} us"
