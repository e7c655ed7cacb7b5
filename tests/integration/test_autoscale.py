"""The autoscaler on a real cluster: a burst grows the workers, an empty queue shrinks them back,
and no task is lost on the way down.

The cluster (`autoscale_cluster` of conftest.py, this module's alone: the tests count every
start and stop of its workers) is brought up by the real CLI with `autoscaling.enabled`, so
`airscale up` starts the autoscaler as a supervised component; the test only triggers DAG runs (REST API) and reads
what the cluster recorded: supervisord's process states, the metadata DB, and the autoscaler's
own state, start, stop and decision records. The burst that several tests read is made once
for the module by the `burst` fixture.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from airscale.autoscale import records
from airscale.autoscale.signals import Signals
from airscale.runtime.airflow_config import api_url
from airscale.runtime.hostname import component_hostname
from airscale.workload.client import AirflowClient
from tests.conftest import airscale

pytestmark = [pytest.mark.integration]

RUNS = 3
TASKS_PER_RUN = 40  # BURST_TASKS in dags_autoscale/autoscale_burst.py
SHORT_TAIL_S = 2  # the memory-floor burst needs the backlog, not a long last task to drain
WORKERS = [f"worker-default-{i}" for i in (1, 2, 3)]


@pytest.fixture
def spec_path(autoscale_cluster):
    return autoscale_cluster.spec_path


@pytest.fixture
def cluster(autoscale_cluster):
    autoscale_cluster.wait_healthy()  # all but the workers, which are the autoscaler's
    return autoscale_cluster.cluster


def running_workers(cluster) -> set[str]:
    infos = cluster.supervisor.infos()
    return {w for w in WORKERS if infos[w]["statename"] in ("STARTING", "RUNNING")}


@pytest.mark.timeout(120)
def test_up_starts_the_autoscaler_at_min(spec_path, cluster):
    # `up` returns once the autoscaler is launched; its first decision follows within seconds.
    deadline = time.monotonic() + 30
    while records.read_state(cluster.layout) is None and time.monotonic() < deadline:
        time.sleep(1)
    assert cluster.supervisor.infos()["autoscaler"]["statename"] in ("STARTING", "RUNNING")
    assert running_workers(cluster) == {"worker-default-1"}
    state = records.read_state(cluster.layout)["queues"]["default"]
    assert (state["desired"], state["actual"], state["reason"]) == (1, 1, "AtMin")
    # `airscale status` shows desired vs actual and the last reason.
    proc = airscale("status", "-s", str(spec_path), check=True)
    assert "autoscaling" in proc.stdout and "AtMin" in proc.stdout


@pytest.fixture(scope="module")
def burst(autoscale_cluster):
    """The burst, once for the module: RUNS runs of autoscale_burst at once, followed in the DB
    until they end, then the workers until they are back to min (or 120 s have passed)."""
    cluster = autoscale_cluster.cluster
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("autoscale_burst")
    client.unpause("autoscale_burst")
    runs = [client.trigger("autoscale_burst") for _ in range(RUNS)]

    client.close()

    # Follow the runs in the DB: on a loaded 2-core machine the api-server can take longer to
    # answer than the tasks take to run.
    def run_states() -> list[str]:
        return [s for (s,) in cluster.query("SELECT state FROM dag_run WHERE dag_id = 'autoscale_burst' "
                                             "AND run_id = ANY(%s) ORDER BY run_id", runs)]

    peak, t0 = 1, time.monotonic()
    while time.monotonic() - t0 < 200:
        peak = max(peak, len(running_workers(cluster)))
        if all(s in ("success", "failed") for s in run_states()):
            break
        time.sleep(2)
    burst_s = time.monotonic() - t0
    states = run_states()
    # The queue is empty: after the stabilization window the extra workers drain and stop.
    deadline = time.monotonic() + 120
    while len(running_workers(cluster)) != 1 and time.monotonic() < deadline:
        time.sleep(2)
    return {"runs": runs, "states": states, "peak": peak, "burst_s": burst_s,
            "after": running_workers(cluster), "back_s": time.monotonic() - t0 - burst_s}


@pytest.mark.timeout(300)
def test_burst_grows_workers_then_they_return_to_min(burst):
    assert burst["states"] == ["success"] * RUNS, burst["states"]
    assert burst["peak"] == 3, f"workers never grew to max (peak {burst['peak']})"
    # Which one stays is the autoscaler's choice (idle ones go first, so a long task keeps its
    # worker), not necessarily worker-default-1.
    assert len(burst["after"]) == 1, burst["after"]
    print(f"burst of {RUNS * TASKS_PER_RUN} tasks took {burst['burst_s']:.0f}s with up to {burst['peak']} "
          f"workers; back to min {burst['back_s']:.0f}s later")


@pytest.mark.timeout(60)
def test_no_task_lost_to_scale_down(cluster, burst):
    rows = dict(cluster.query("SELECT state, count(*) FROM task_instance WHERE dag_id = 'autoscale_burst' "
                               "GROUP BY state"))
    assert rows == {"success": RUNS * TASKS_PER_RUN}, rows
    bad = cluster.query("SELECT count(*) FROM task_instance WHERE state IN "
                         "('failed', 'up_for_retry', 'restarting', 'upstream_failed') OR try_number > 1")
    assert bad == [(0,)]
    # The burst really ran on the workers the autoscaler added.
    hosts = {h for (h,) in cluster.query("SELECT DISTINCT hostname FROM task_instance WHERE dag_id = 'autoscale_burst'")}
    assert hosts == {component_hostname(w) for w in WORKERS}


@pytest.mark.timeout(30)
def test_no_worker_was_stopped_with_a_task(cluster, burst):
    stops = records.read_jsonl(records.stops_file(cluster.layout))
    assert len(stops) == 2 and len({s["worker"] for s in stops}) == 2, stops
    for s in stops:
        assert s["reason"] == "drained", s
        assert (s["active_tasks"], s["reserved_tasks"], s["db_running_tasks"]) == (0, 0, 0), s
    # Each stopped worker's last task ended before its stop (hostname = component).
    for s in stops:
        (last_end,) = cluster.query("SELECT EXTRACT(EPOCH FROM max(end_date)) FROM task_instance "
                                     "WHERE hostname = %s", component_hostname(s["worker"]))[0]
        assert last_end is None or float(last_end) <= s["at"], s
    print("stops:", json.dumps(stops))
    # A stopped worker stays stopped (nothing restarts it behind the autoscaler's back).
    deadline = time.monotonic() + 60
    while True:
        infos = cluster.supervisor.infos()
        states = {s["worker"]: infos[s["worker"]]["statename"] for s in stops}
        if all(v == "STOPPED" for v in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert all(v == "STOPPED" for v in states.values()), states


@pytest.mark.timeout(30)
def test_metrics_and_decision_log(cluster, burst):
    port = cluster.spec.ports.autoscaler_metrics
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'airscale_autoscaler_desired_workers{queue="default"} 1.0' in text
    assert 'airscale_autoscaler_actual_workers{queue="default"} 1.0' in text
    assert 'airscale_autoscaler_worker_stops_total{outcome="drained",queue="default"} 2.0' in text
    assert 'airscale_autoscaler_iteration_errors_total 0.0' in text
    reasons = [d["reason"] for d in records.read_jsonl(records.decisions_file(cluster.layout))]
    assert {"ScaleUp", "ScaleDownStabilized", "ScaleDown"} <= set(reasons), reasons


@pytest.mark.timeout(60)
def test_forecast_sees_a_run_due_tomorrow(cluster):
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("autoscale_tomorrow")
    client.unpause("autoscale_tomorrow")
    signals = Signals(cluster.spec, cluster.secrets(), cluster.supervisor)
    try:
        totals, runs = signals.forecast(3 * 86400)
        assert totals == {"default": 2}
        assert [r["dag_id"] for r in runs] == ["autoscale_tomorrow"]
        assert signals.forecast(60) == ({}, [])  # not due within a minute
    finally:
        signals.close()


PREWARM_DAG = "autoscale_prewarm"  # dags_autoscale/autoscale_prewarm.py: 8 tasks, due every minute


@pytest.mark.timeout(600)  # up to 3 minutes of schedule
def test_prewarm_starts_a_worker_before_a_scheduled_run_is_queued(cluster, burst):
    """A cron DAG due within the look-ahead: the autoscaler starts a worker ahead of the run
    (reason Prewarm) so that it answers before the run's tasks are queued, and once the
    scheduled run is done releases it without waiting out the stabilization window.

    catchup=False makes Airflow create the run of the tick just passed at unpause; that one
    is demand-driven. The test then follows the decision records until a pre-warm start
    precedes a scheduled run of the DAG (usually the next minute's)."""
    layout = cluster.layout
    # The burst above timed the workers' start-ups: the pre-warm lead derives from them.
    starts = records.read_jsonl(records.starts_file(layout))
    assert starts and all(0 < s["startup_s"] < 120 for s in starts), starts
    seen = len(records.read_jsonl(records.decisions_file(layout)))
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag(PREWARM_DAG)
    unpaused_at = time.time()
    client.unpause(PREWARM_DAG)
    found = None
    try:
        deadline = time.monotonic() + 200
        while found is None and time.monotonic() < deadline:
            time.sleep(3)
            # (a decision at the unpause may be for the tick just passed: not a pre-warm ahead)
            prewarms = [d for d in records.read_jsonl(records.decisions_file(layout))[seen:]
                        if d["reason"] == "Prewarm" and d["at"] > unpaused_at + 5
                        and any(a.startswith("start ") for a in d["actions"])]
            for d in prewarms:
                # The first scheduled run due after the decision, once its tasks are queued.
                rows = cluster.query(
                    "SELECT dr.run_id, EXTRACT(EPOCH FROM dr.run_after), "
                    "EXTRACT(EPOCH FROM min(ti.queued_dttm)), count(ti.queued_dttm) "
                    "FROM dag_run dr JOIN task_instance ti ON ti.dag_id = dr.dag_id AND ti.run_id = dr.run_id "
                    "WHERE dr.dag_id = %s AND dr.run_type = 'scheduled' AND dr.run_after > to_timestamp(%s) "
                    "GROUP BY dr.run_id, dr.run_after ORDER BY dr.run_after LIMIT 1", PREWARM_DAG, d["at"])
                if rows and rows[0][3] > 0:
                    found = (d, rows[0])
                    break
    finally:
        client._call("PATCH", f"/dags/{PREWARM_DAG}", json={"is_paused": True})
        client.close()
    assert found is not None, "no pre-warm start before a scheduled run within 200 s"
    d, (run_id, run_after, first_queued, _) = found
    lead = float(run_after) - d["at"]
    worker = next(a.split()[1] for a in d["actions"] if a.startswith("start "))
    print(f"pre-warm {d['at'] - unpaused_at:.0f}s after unpause, {lead:.1f}s before {run_id} was due, "
          f"its first task queued {float(first_queued) - d['at']:.1f}s after the start of {worker}: "
          f"{d['message']}")
    assert float(first_queued) > d["at"], "the worker was started only after the run was queued"
    # The lead comes from the measured start-up (plus two intervals and a slack), not the
    # whole 120 s look-ahead, and no earlier than the look-ahead.
    assert d["startup_s"] is not None and 0 < lead <= d["startup_s"] + 2 * 2 + 5 + 2, (lead, d)
    # It answered (timed in the starts file) no later than a few seconds after the run's
    # first task was queued (resolution: one busy-time iteration of about a second).
    answered = [s for s in records.read_jsonl(records.starts_file(layout))
                if s["worker"] == worker and s["at"] > d["at"]]
    assert answered, f"{worker} never answered"
    print(f"{worker} answered {answered[0]['startup_s']}s after its start, "
          f"{answered[0]['at'] - float(first_queued):+.1f}s from the run's first queued task")
    # When the scheduled run is done, the workers held for it go without waiting out the
    # stabilization window (reason ScheduledRunsDone).
    deadline = time.monotonic() + 60
    reasons: list[str] = []
    while "ScheduledRunsDone" not in reasons and time.monotonic() < deadline:
        time.sleep(2)
        reasons = [x["reason"] for x in records.read_jsonl(records.decisions_file(layout))[seen:]]
    assert "ScheduledRunsDone" in reasons, reasons


@pytest.mark.timeout(60)
def test_a_spec_too_large_for_the_memory_is_refused(tmp_path):
    """No cluster: `validate`, `plan` and `up` refuse it before anything starts (exit 2)."""
    import psutil

    # 64 slots per worker, as many workers as fill the machine with every slot busy (~80 MiB each).
    workers = max(2, int(psutil.virtual_memory().total / 2**20 / (64 * 80)) + 1)
    spec = tmp_path / "airscale.yaml"
    spec.write_text(f"cluster: {{name: huge, data_dir: {tmp_path / 'data'}, base_port: 36900}}\n"
                    f"queues:\n  big: {{min_workers: 1, max_workers: {workers}, concurrency: 64}}\n"
                    f"  small: {{min_workers: 0, max_workers: 1, concurrency: 2}}\n")
    for command in ("validate", "plan", "up"):
        proc = airscale(command, "-s", str(spec))
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert f"queues.big: {workers} workers x 64 slots" in proc.stderr and "queues.small" in proc.stderr
        assert "GiB after 15% headroom" in proc.stderr and "lower queues.big.max_workers" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # `up` started nothing


@pytest.mark.timeout(400)
def test_memory_floor_holds_the_workers_and_every_task_still_succeeds(autoscale_cluster, cluster):
    """With a memory floor no machine has, the autoscaler starts no worker above min_workers:
    a burst waits for the one worker (reason MemoryHeadroom in status and metrics) and every task
    still succeeds. The floor is set in the spec and the autoscaler restarted with it (the
    other components do not read it), then set back."""
    import yaml

    spec_path = autoscale_cluster.spec_path
    original = spec_path.read_text()
    data = yaml.safe_load(original)
    data["autoscaling"]["memory_floor_mib"] = 16 * 1024 * 1024
    deadline = time.monotonic() + 120
    while len(running_workers(cluster)) != 1:  # the pre-warm's worker gone
        assert time.monotonic() < deadline, running_workers(cluster)
        time.sleep(2)
    try:
        spec_path.write_text(yaml.safe_dump(data))
        airscale("restart", "autoscaler", "-s", str(spec_path), check=True)
        client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
        client.wait_for_dag("autoscale_burst")
        client.unpause("autoscale_burst")
        run = client.trigger("autoscale_burst", conf={"tail_s": SHORT_TAIL_S})
        client.close()
        held, peak, t0 = None, 1, time.monotonic()
        while time.monotonic() - t0 < 300:
            peak = max(peak, len(running_workers(cluster)))
            state = (records.read_state(cluster.layout) or {}).get("queues", {}).get("default", {})
            if state.get("reason") == "MemoryHeadroom" and held is None:
                held = state
                status = airscale("status", "-s", str(spec_path), check=True).stdout
                metrics = httpx.get(f"http://127.0.0.1:{cluster.spec.ports.autoscaler_metrics}/metrics",
                                    timeout=5).text
            (s,) = cluster.query("SELECT state FROM dag_run WHERE run_id = %s", run)[0]
            if s in ("success", "failed"):
                break
            time.sleep(2)
    finally:
        spec_path.write_text(original)
        airscale("restart", "autoscaler", "-s", str(spec_path), check=True)
    assert held is not None, "the autoscaler never held for memory"
    print("held:", held["message"])
    assert (held["desired"], held["actual"]) == (1, 1) and "MiB available for new workers" in held["message"]
    assert "MemoryHeadroom" in status
    assert 'airscale_autoscaler_memory_held{queue="default"} 1.0' in metrics
    assert peak == 1, f"a worker was started past the memory floor (peak {peak})"
    rows = dict(cluster.query("SELECT state, count(*) FROM task_instance WHERE run_id = %s GROUP BY state", run))
    assert rows == {"success": TASKS_PER_RUN}, rows


@pytest.mark.timeout(200)
def test_worker_memory_is_sampled_and_refits_the_plan(spec_path, cluster):
    """Once a minute the autoscaler records each serving worker's PSS with its running tasks
    (memory_sampler.py); with a few samples, `airscale plan` shows the figures refitted from them
    (the module's bursts ran tasks on the workers meanwhile)."""
    from airscale.autoscale.memory_sampler import memory_file

    concurrency = cluster.spec.queues["default"].concurrency
    deadline = time.monotonic() + 150
    while len(samples := records.read_jsonl(memory_file(cluster.layout))) < 3:
        assert time.monotonic() < deadline, samples
        time.sleep(5)
    for s in samples:
        assert s["queue"] == "default" and s["concurrency"] == concurrency, s
        # The worker and its pool processes at least (with its log server and fork-server client);
        # an idle 4-slot worker took 252 MiB on the reference machine.
        assert s["processes"] >= concurrency + 1 and 100 < s["tree_mib"] < 4096, s
    print("samples:", [(s["active"], s["tree_mib"]) for s in samples])
    plan = json.loads(airscale("plan", "-s", str(spec_path), "--json", check=True).stdout)
    memory = plan["autoscaling"]["memory"]
    print("refitted:", memory)
    assert memory["source"].startswith("measured on this cluster: "), memory
    assert 5 <= memory["idle_slot_mib"] <= 4096 and 5 <= memory["running_task_mib"] <= 4096, memory
    text = airscale("plan", "-s", str(spec_path), check=True).stdout
    assert "measured on this cluster" in text, text
