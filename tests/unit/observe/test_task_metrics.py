"""Metrics DAG authors publish from task code (airscale.task_metrics) and how the statsd bridge
turns them into Prometheus series (airscale.observe.statsd)."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry

from airscale import task_metrics
from airscale.errors import AirscaleError
from airscale.observe.statsd import Store, parse_line
from airscale.spec import parse_spec


@pytest.mark.parametrize(
    "kind, name, value, labels, expected",
    [
        ("counter", "rows_loaded", 120, {"table": "orders"},
         "airscale.custom.rows_loaded,dag_id=etl,task_id=load,label.table=orders:120.0|c"),
        ("gauge", "lag_seconds", -3.5, {},
         "airscale.custom.lag_seconds,dag_id=etl,task_id=load:-3.5|g"),
        ("histogram", "batch_seconds", 0.25, {"b": 1, "a": "x"},
         "airscale.custom.batch_seconds,dag_id=etl,task_id=load,label.a=x,label.b=1:0.25|h"),
        # Separators and spaces in a label value cannot forge tags or lines.
        ("counter", "c", 1, {"table": "a,b=c:d|e f\nx"},
         "airscale.custom.c,dag_id=etl,task_id=load,label.table=a_b_c_d_e_f_x:1.0|c"),
        ("counter", "c", 1, {"table": ""}, "airscale.custom.c,dag_id=etl,task_id=load,label.table=_:1.0|c"),
        ("counter", "c", 1234567, {}, "airscale.custom.c,dag_id=etl,task_id=load:1234567.0|c"),
    ],
)
def test_line(kind, name, value, labels, expected):
    assert task_metrics.line(kind, name, value, labels, dag_id="etl", task_id="load") == expected


def test_identity_comes_from_the_task_process_environment(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "nightly")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "extract")
    assert task_metrics.line("counter", "n", 1, {}) == "airscale.custom.n,dag_id=nightly,task_id=extract:1.0|c"
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID")
    monkeypatch.delenv("AIRFLOW_CTX_TASK_ID")
    assert task_metrics.line("counter", "n", 1, {}) == "airscale.custom.n:1.0|c"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: task_metrics.line("counter", "Rows", 1, {}), "metric name 'Rows'"),
        (lambda: task_metrics.line("counter", "rows.loaded", 1, {}), "metric name 'rows.loaded'"),
        (lambda: task_metrics.line("counter", "x" * 64, 1, {}), "metric name"),
        (lambda: task_metrics.line("counter", "n", float("nan"), {}), "finite number"),
        (lambda: task_metrics.line("counter", "n", "3", {}), "finite number"),
        (lambda: task_metrics.line("counter", "n", True, {}), "finite number"),
        (lambda: task_metrics.line("counter", "n", 1, {"dag_id": "x"}), "label 'dag_id'"),
        (lambda: task_metrics.line("counter", "n", 1, {"Table": "x"}), "label 'Table'"),
        (lambda: task_metrics.line("counter", "n", 1, {f"l{i}": i for i in range(6)}), "at most 5 labels"),
        (lambda: task_metrics.counter("n", -1), "only grows"),
    ],
)
def test_author_mistakes_raise_naming_the_culprit(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call()


@pytest.mark.parametrize(
    "kind, value, family, prom_kind",
    [("counter", 3, "airscale_custom_rows", "counter"),
     ("gauge", -2, "airscale_custom_rows", "gauge"),  # set, not statsd's decrement
     ("histogram", 1.5, "airscale_custom_rows", "histogram")],  # the author's unit, not ms
)
def test_bridge_reads_back_what_the_api_sends(kind, value, family, prom_kind):
    s = parse_line(task_metrics.line(kind, "rows", value, {"table": "orders"}, dag_id="etl", task_id="load"))
    assert (s.name, s.kind, s.value, s.delta) == (family, prom_kind, float(value), False)
    assert dict(s.labels) == {"dag_id": "etl", "task_id": "load", "table": "orders"}


def test_forged_reserved_labels_on_the_wire_are_dropped():
    s = parse_line("airscale.custom.n,dag_id=a,task_id=b,label.component=x,component=y,label.ok=1:1|c")
    assert dict(s.labels) == {"dag_id": "a", "task_id": "b", "ok": "1"}


def series(store: Store, family: str) -> int:
    registry = CollectorRegistry()
    registry.register(store)
    return sum(1 for m in registry.collect() if m.name == family for s in m.samples)


def test_each_metric_keeps_its_allowance_of_label_sets():
    store = Store(task_series=2, task_limits={"wide": 5})
    for i in range(10):
        store.feed(task_metrics.line("counter", "narrow", 1, {"k": i}, dag_id="d", task_id="t"))
        store.feed(task_metrics.line("counter", "wide", 1, {"k": i}, dag_id="d", task_id="t"))
    assert series(store, "airscale_custom_narrow") == 2
    assert series(store, "airscale_custom_wide") == 5
    assert store.dropped["cardinality"] == 8 + 5
    # Airflow's own metrics keep the bridge-wide limit.
    assert store.limit_of("airflow_ti_finish") == store.max_series


def test_spec_allowances_are_checked(tmp_path):
    path = tmp_path / "airscale.yaml"
    spec = parse_spec("monitoring: {task_metrics: {metrics: {rows_loaded: 500}}}\n", path)
    assert spec.monitoring.task_metrics.metrics == {"rows_loaded": 500}
    for bad in ("{Rows: 5}", "{rows: 0}"):
        with pytest.raises(AirscaleError, match="task_metrics"):
            parse_spec(f"monitoring: {{task_metrics: {{metrics: {bad}}}}}\n", path)


def test_sending_reaches_the_statsd_port_and_never_raises(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        monkeypatch.setattr(task_metrics, "_target", server.getsockname())
        monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "etl")
        monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "load")
        task_metrics.counter("rows_loaded", 7, table="orders")
        assert server.recv(1024).decode() == "airscale.custom.rows_loaded,dag_id=etl,task_id=load,label.table=orders:7.0|c"
    monkeypatch.setattr(task_metrics, "_target", ("no-such-host.invalid", 9))
    task_metrics.gauge("g", 1)  # an unresolvable statsd host does not fail the task
    monkeypatch.setattr(task_metrics, "_target", None)
    task_metrics.gauge("g", 1)  # metrics off: nothing sent, nothing raised
