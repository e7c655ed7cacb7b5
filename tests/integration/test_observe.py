"""The monitoring stack on a real cluster: metrics flow, and alerts reach a person.

The shared `default` cluster of conftest.py has short scrape, evaluation, `for:` and grouping
times, so an alert's path (Airflow -> exporter -> Prometheus rule -> Alertmanager -> bundled
webhook receiver -> alerts.jsonl) takes seconds. Tests look only at alerts received since they
started; the one that stops every scheduler starts them again before it returns.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx
import pytest

from airscale.observe.stack import MonitoringLayout
from airscale.runtime import api_servers
from airscale.runtime.airflow_config import api_url
from airscale.workload.client import AirflowClient
from tests.conftest import airscale

pytestmark = [pytest.mark.integration]

SCHEDULERS = 2
ALERT_WITHIN = 60.0  # seconds from the cause to the alert in alerts.jsonl


@pytest.fixture
def spec_path(healthy_default):
    return healthy_default.spec_path


@pytest.fixture
def cluster(healthy_default):
    return healthy_default.cluster


def prom_query(cluster, expr: str) -> list[dict]:
    port = cluster.spec.ports.prometheus
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def label_values(cluster, label: str, metric: str) -> list[str]:
    port = cluster.spec.ports.prometheus
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]


def alerts_since(cluster, t0: float) -> list[dict]:
    f = MonitoringLayout.of(cluster.layout.root).alerts_jsonl
    if not f.exists():
        return []
    return [a for a in map(json.loads, f.read_text().splitlines()) if a["received_at"] >= t0]


def wait_for_alert(cluster, t0: float, name: str, timeout: float, **labels) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for a in alerts_since(cluster, t0):
            if a["alertname"] == name and a["status"] == "firing" and \
                    all(a["labels"].get(k) == v for k, v in labels.items()):
                return a
        time.sleep(0.5)
    return None


@pytest.mark.timeout(120)
def test_airflow_metrics_reach_prometheus(cluster):
    # statsd from the schedulers (tagged with their component) and the DB-side gauges, through
    # the exporter and a real Prometheus scrape.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        beats = prom_query(cluster, "airflow_scheduler_heartbeat_total")
        db = prom_query(cluster, "airscale_metadata_db_up")
        if len(beats) == SCHEDULERS and db and db[0]["value"][1] == "1":
            break
        time.sleep(2)
    assert {b["metric"]["component"] for b in beats} == {f"scheduler-{i}" for i in range(1, SCHEDULERS + 1)}
    assert db and db[0]["value"][1] == "1"
    targets = {r["metric"]["job"]: r["value"][1] for r in prom_query(cluster, "up")}
    expected = {"prometheus": "1", "alertmanager": "1", "airscale": "1", "postgres": "1", "redis": "1"}
    if api_servers.redundant(cluster.spec):  # HAProxy's own metrics, in front of the instances
        expected["api-proxy"] = "1"
    assert targets == expected


@pytest.fixture(scope="module")
def failed_run(default_cluster):
    """One run of observe_fail (its only task fails, no retry), followed to its end:
    (trigger time, end time, result)."""
    cluster = default_cluster.cluster
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    try:
        client.wait_for_dag("observe_fail")
        client.unpause("observe_fail")
        t0 = time.time()
        run = client.trigger("observe_fail")
        result = client.wait_for_run("observe_fail", run, timeout=120)
        return t0, time.time(), result
    finally:
        client.close()


@pytest.mark.timeout(240)
def test_failed_task_alert_reaches_the_local_receiver(cluster, spec_path, failed_run):
    t0, ended, result = failed_run
    assert result.state == "failed"
    alert = wait_for_alert(cluster, t0, "TaskFailed", ALERT_WITHIN, dag_id="observe_fail")
    assert alert is not None, f"no TaskFailed alert within {ALERT_WITHIN}s; got {alerts_since(cluster, t0)}"
    # Through Alertmanager (receiver name, external cluster label), not straight from Prometheus.
    assert alert["receiver"] == "local" and alert["labels"]["cluster"] == cluster.spec.cluster.name
    print(f"TaskFailed reached the receiver {alert['received_at'] - ended:.1f}s after the run ended "
          f"({alert['received_at'] - t0:.1f}s after the trigger)")
    # A person sees it with the CLI.
    proc = airscale("alerts", "tail", "--no-follow", "-s", str(spec_path), check=True)
    assert "TaskFailed" in proc.stdout and "observe_fail" in proc.stdout
    # The cluster policy's failure notifier told Alertmanager directly from the failing task.
    notified = wait_for_alert(cluster, t0, "TaskInstanceFailed", ALERT_WITHIN, dag_id="observe_fail", task_id="boom")
    assert notified is not None, f"no TaskInstanceFailed from the task policy; got {alerts_since(cluster, t0)}"


@pytest.mark.timeout(60)
def test_task_policy_gives_defaults_only_to_tasks_that_set_none(cluster):
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("observe_fail")
    task = client._call("GET", "/dags/observe_fail/tasks/boom").json()
    assert task["retries"] == 0  # set by the DAG: kept
    # Not set by the DAG: the spec's (the REST API does not show max_retry_delay).
    assert task["retry_exponential_backoff"] == 2.0
    assert task["execution_timeout"] == {"__type": "TimeDelta", "days": 0, "seconds": 300, "microseconds": 0} \
        or "0:05:00" in str(task["execution_timeout"]), task["execution_timeout"]


@pytest.mark.timeout(300)
def test_every_dashboard_panel_query_returns_data(cluster, spec_path, tmp_path, failed_run):
    # failed_run: the panel of failed tasks needs one in its window.
    # A small workload, twice: rate() and histogram_quantile() need a counter that grew between scrapes.
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("observe_ok")
    client.unpause("observe_ok")
    for _ in range(2):
        assert client.wait_for_run("observe_ok", client.trigger("observe_ok"), timeout=120).state == "success"
        time.sleep(3 * cluster.spec.monitoring.scrape_interval_seconds)
    airscale("dashboards", "export", str(tmp_path / "grafana"), "-s", str(spec_path), check=True)
    boards = sorted((tmp_path / "grafana" / "dashboards").glob("*.json"))
    assert len(boards) == 5
    assert (tmp_path / "grafana" / "provisioning" / "datasources" / "airscale.yaml").exists()
    empty, checked = [], 0
    for board_file in boards:
        board = json.loads(board_file.read_text())
        variables = [v for v in board["templating"]["list"] if v["type"] == "query"]
        assert variables[0]["name"] == "cluster", board_file.name
        for v in variables:  # every variable offers values: label_values(metric, label)
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"]).groups()
            values = label_values(cluster, label, metric)
            if not values:
                empty.append(f"{board_file.name}: variable {v['name']}: {v['query']} has no values")
            if v["name"] == "cluster":
                assert values == [cluster.spec.cluster.name], values
        for p in board["panels"]:
            for t in p["targets"]:
                # What Grafana substitutes: the rate window, and each variable's default (this
                # cluster) or "All".
                expr = t["expr"].replace("$__rate_interval", "10m").replace("$cluster", cluster.spec.cluster.name)
                expr = re.sub(r"\$[a-z_]+", ".*", expr)
                result = prom_query(cluster, expr)
                checked += 1
                if not any(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in result):
                    empty.append(f"{board_file.name}: {p['title']}: {expr} -> {result}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    print(f"{checked} panel queries and the variables of {len(boards)} dashboards all returned data")


@pytest.mark.timeout(240)
def test_task_code_metrics_reach_prometheus_with_dag_and_task(cluster):
    """The seed's example: a counter labelled by the author, plus dag_id and task_id."""
    client = AirflowClient(api_url(cluster.spec), "admin", cluster.secrets().admin_password)
    client.wait_for_dag("observe_custom")
    client.unpause("observe_custom")
    assert client.wait_for_run("observe_custom", client.trigger("observe_custom"), timeout=120).state == "success"
    ident = 'dag_id="observe_custom",task_id="load"'
    want = {
        f'airscale_custom_rows_loaded_total{{{ident},table="orders"}}': 150.0,
        f'airscale_custom_backlog_files{{{ident},source="s3"}}': 7.0,
        f'airscale_custom_batch_seconds_count{{{ident}}}': 1.0,
    }
    deadline = time.monotonic() + 6 * cluster.spec.monitoring.scrape_interval_seconds + 10
    while True:
        got = {expr: [float(r["value"][1]) for r in prom_query(cluster, expr)] for expr in want}
        if all(got[e] == [v] for e, v in want.items()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(got[e] == [v] for e, v in want.items()), got


@pytest.mark.timeout(60)
def test_top_shows_queues_throughput_and_schedulers(spec_path):
    proc = airscale("top", "--once", "-s", str(spec_path), check=True)
    for expected in ("Queues", "default", "tasks finished/s", "scheduler-1", "scheduler-2"):
        assert expected in proc.stdout, proc.stdout


def test_restart_series_reach_prometheus(cluster):
    # The series behind ComponentRestarted, BrokerRestarted and DatabaseRestarted.
    for expr in ("airscale_component_restarts_total", "redis_uptime_in_seconds",
                 "airscale_database_start_time_seconds"):
        assert prom_query(cluster, expr), f"no {expr} in Prometheus"


@pytest.mark.timeout(90)
def test_in_cluster_exporter_command_serves_database_metrics(cluster, spec_path):
    """`airscale exporter`, as the rendered Kubernetes Deployment runs it, against this cluster's
    database; on 127.0.0.2 so that its ports do not collide with the cluster's own exporter."""
    import os
    import sys

    from airscale.runtime.airflow_config import database_url

    env = dict(os.environ, AIRSCALE_DATABASE_URL=database_url(cluster.spec, cluster.secrets()))
    proc = subprocess.Popen([sys.executable, "-m", "airscale.cli", "exporter", "-s", str(spec_path),
                             "--listen", "127.0.0.2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.2:{cluster.spec.ports.exporter}/metrics"
        deadline, body = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "airscale_metadata_db_up 1.0" not in body:
            try:
                body = httpx.get(url, timeout=5).text
            except httpx.HTTPError:
                time.sleep(1)
        assert "airscale_metadata_db_up 1.0" in body, body[-2000:]
        # prometheus_client writes labels in alphabetical order.
        assert 'airscale_task_instances{queue="default",state="queued"}' in body, body[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.timeout(420)
def test_a_drill_reports_the_alert_its_fault_raised(spec_path, healthy_default):
    proc = airscale("drill", "scheduler-kill", "--runs", "2", "--seconds", "2", "-s", str(spec_path), timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "drill scheduler-kill: PASS" in proc.stdout, proc.stdout
    # Other alerts may fire beside it.
    fired = next(line for line in proc.stdout.splitlines() if "alerts fired:" in line)
    assert "ComponentRestarted (scheduler-" in fired, proc.stdout
    healthy_default.wait_healthy()


@pytest.mark.timeout(420)
def test_stopping_every_scheduler_fires_no_healthy_scheduler(cluster, healthy_default):
    """Starts the schedulers again and waits for the cluster to be healthy before it returns."""
    stale = cluster.spec.monitoring.thresholds.scheduler_heartbeat_stale_seconds
    schedulers = [f"scheduler-{i}" for i in range(1, SCHEDULERS + 1)]
    t0 = time.time()
    try:
        for name in schedulers:
            cluster.stop_component(name)
        stopped = time.time()
        alert = wait_for_alert(cluster, t0, "NoHealthyScheduler", stale + ALERT_WITHIN)
    finally:
        for name in schedulers:
            cluster.start_component(name)
        healthy_default.wait_healthy()
    assert alert is not None, f"no NoHealthyScheduler alert; got {alerts_since(cluster, t0)}"
    assert alert["severity"] == "critical"
    # Not a leftover from start-up: it fired only once the last heartbeat was older than `stale`.
    assert alert["received_at"] - stopped >= stale - 5
    print(f"NoHealthyScheduler reached the receiver {alert['received_at'] - stopped:.1f}s after the "
          f"last scheduler stopped (stale threshold {stale}s)")
