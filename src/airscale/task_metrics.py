"""Metrics of your own from task code: counters, gauges and histograms with labels.

    from airscale import task_metrics

    @task
    def load():
        rows = copy_orders()
        task_metrics.counter("rows_loaded", rows, table="orders")
        task_metrics.gauge("lag_seconds", 42.0, source="kafka")
        task_metrics.histogram("batch_seconds", 1.7)

They reach Prometheus through the cluster's statsd bridge as `airscale_custom_<name>`
(`_total` for counters), with the labels given plus `dag_id` and `task_id` of the task that
published them (`airscale_custom_rows_loaded_total{dag_id="etl", task_id="load", table="orders"}`).
Each metric keeps at most `monitoring.task_metrics.max_series` label sets (a label with
unbounded values cannot blow up Prometheus); docs/metrics.md says more.

Names and labels are checked here, where the author's mistake is made: a bad one raises
ValueError naming it. Sending never raises: a metric is not worth failing a task for.

This module imports only the standard library (it runs in every task process); the wire format
below is read back by `airscale.observe.statsd`.
"""

from __future__ import annotations

import math
import os
import re
import socket

# statsd name prefix and label-key prefix on the wire: Airflow's own tags never use them.
WIRE_PREFIX = "airscale.custom."
LABEL_PREFIX = "label."
PROM_PREFIX = "airscale_custom_"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
LABEL = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
# Labels the bridge or Prometheus sets itself.
RESERVED = frozenset({"dag_id", "task_id", "component", "cluster", "instance", "job", "le", "quantile"})
MAX_LABELS = 5
MAX_VALUE_CHARS = 100
_BAD_VALUE = re.compile(r"[^A-Za-z0-9_.\-/@]")
KINDS = {"counter": "c", "gauge": "g", "histogram": "h"}


def counter(name: str, value: float = 1, **labels: object) -> None:
    """Add `value` (>= 0) to counter `name`."""
    if value < 0:
        raise ValueError(f"counter {name!r}: a counter only grows; got {value}")
    _send(line("counter", name, value, labels))


def gauge(name: str, value: float, **labels: object) -> None:
    """Set gauge `name` to `value`."""
    _send(line("gauge", name, value, labels))


def histogram(name: str, value: float, **labels: object) -> None:
    """Observe `value` in histogram `name` (buckets from 5 ms to an hour: seconds fit best)."""
    _send(line("histogram", name, value, labels))


def line(kind: str, name: str, value: float, labels: dict[str, object],
         dag_id: str | None = None, task_id: str | None = None) -> str:
    """The statsd line for one observation (pure, but for reading the task's identity from the
    environment Airflow sets in a task process when `dag_id`/`task_id` are not given)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"metric name {name!r}: use lower-case letters, digits and _ (at most 63), "
                         "starting with a letter")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"metric {name!r}: the value must be a finite number, not {value!r}")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"metric {name!r}: at most {MAX_LABELS} labels, got {len(labels)}")
    tags = {
        "dag_id": dag_id if dag_id is not None else os.environ.get("AIRFLOW_CTX_DAG_ID", ""),
        "task_id": task_id if task_id is not None else os.environ.get("AIRFLOW_CTX_TASK_ID", ""),
    }
    for key, v in sorted(labels.items()):
        if not LABEL.match(key) or key in RESERVED:
            raise ValueError(f"metric {name!r}: label {key!r} must be lower-case letters, digits and _ "
                             f"and not one of {', '.join(sorted(RESERVED))}")
        tags[LABEL_PREFIX + key] = str(v)
    wire = ",".join(f"{k}={_clean(v)}" for k, v in tags.items() if v != "" or k.startswith(LABEL_PREFIX))
    return f"{WIRE_PREFIX}{name}{',' + wire if wire else ''}:{float(value)!r}|{KINDS[kind]}"


def _clean(value: str) -> str:
    return _BAD_VALUE.sub("_", value)[:MAX_VALUE_CHARS] or "_"


_target: tuple[str, int] | None | bool = False  # False: not looked up yet; None: metrics off


def _statsd_target() -> tuple[str, int] | None:
    """Where this task process's Airflow sends statsd ([metrics] of airflow.cfg)."""
    global _target
    if _target is False:
        try:
            from airflow.configuration import conf

            on = conf.getboolean("metrics", "statsd_on", fallback=False)
            _target = (conf.get("metrics", "statsd_host"), conf.getint("metrics", "statsd_port")) if on else None
        except Exception:  # outside Airflow, or a config without [metrics]
            _target = None
    return _target or None


def _send(text: str) -> None:
    target = _statsd_target()
    if target is None:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(*target, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.sendto(text.encode(), address)
    except OSError:
        pass
