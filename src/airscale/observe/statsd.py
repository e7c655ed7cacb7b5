"""Airflow statsd lines -> labeled Prometheus metrics (parsing and naming: pure; `Store`: state).

Naming (documented in docs/metrics.md), for Airflow 3 with InfluxDB-style tags:
- `airflow_` + the statsd name with `.` and `-` turned into `_`;
- counters end in `_total`, timers become histograms in seconds ending in `_seconds`;
- tags become labels, renamed where Airflow's tag names are clumsy (`pool_name` -> `pool`,
  `executor_class_name` -> `executor`, `operator_name` -> `operator`), and the airscale
  name handler's `component` (`scheduler-2`, `worker-default-1`);
- a few names that carry a value in the name are split into a label
  (`dagrun.duration.success` -> `airflow_dagrun_duration_seconds{state="success"}`).
Tags not in LABELS are dropped and each metric keeps at most `max_series` label sets: a tag
with unbounded values cannot blow up Prometheus.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import Metric

from airscale import task_metrics

PREFIX = "airflow."

# Airflow tag -> Prometheus label. Anything else is dropped (file paths, run ids, job ids).
LABELS = {
    "component": "component",
    "dag_id": "dag_id",
    "task_id": "task_id",
    "queue": "queue",
    "state": "state",
    "status": "status",
    "pool_name": "pool",
    "executor_class_name": "executor",
    "operator_name": "operator",
    "hostname": "hostname",
    "run_type": "run_type",
    "task_type": "task_type",
    "bundle_name": "bundle",
    "file_name": "file",
    "action": "action",
    "executor": "executor",
}

# statsd names that carry a value in the name: (regex, base name, label from the group).
SPLIT_NAMES = [
    (re.compile(r"^dagrun\.duration\.(success|failed)$"), "dagrun.duration", "state"),
    (re.compile(r"^(.+)_start$"), "job_start", "job"),
    (re.compile(r"^(.+)_end$"), "job_end", "job"),
    (re.compile(r"^(.+)_heartbeat_failure$"), "job_heartbeat_failure", "job"),
]

# Seconds: from a 10 ms critical section to an hour-long task.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# A timer kept per DAG, task or file costs 21 series (18 buckets, +Inf, sum, count) for each of
# them: in the soak's 500-DAG profile these three were 84,000 of the 150,000 series the exporter
# rendered on every scrape (1.5 s of CPU each, a share of the host that grew with the tasks seen
# until it starved the api-servers) and Prometheus kept in its head block. What reads them groups
# by less (the dashboards, `airscale top`), so these timers lose the labels nobody groups by:
HISTOGRAM_DROPPED_LABELS = {
    # queue wait: a property of the queue and the scheduler, read `sum by (le, queue)`
    "airflow_task_scheduled_duration_seconds": frozenset({"dag_id", "task_id"}),
    # the scheduler's dependency check of a run, read as the scheduler's own cost
    "airflow_dagrun_dependency_check_seconds": frozenset({"dag_id"}),
}
# Timers that report the last value of something per file: a gauge, as their name says.
LAST_VALUE_TIMERS = frozenset({"airflow_dag_processing_last_duration_seconds"})

# States of `airscale_task_finished_total` that exist from the start at 0, so `increase()` sees
# the first failure (a series born at 1 shows no increase in Prometheus).
FINISH_STATES = ("success", "failed", "up_for_retry", "skipped", "upstream_failed")

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True)
class Sample:
    name: str  # Prometheus family name without the _total suffix
    kind: str  # counter | gauge | histogram
    labels: tuple[tuple[str, str], ...]
    value: float
    delta: bool = False  # a gauge line with an explicit sign (+3 / -2) adjusts instead of sets


class BadLine(ValueError):
    pass


def prom_name(stat: str) -> str:
    return "airflow_" + _NAME_OK.sub("_", stat.replace(".", "_").replace("-", "_"))


def _value(raw: str, line: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BadLine(f"bad value in {line[:80]!r}") from None
    if not math.isfinite(value):
        raise BadLine(f"value not finite in {line[:80]!r}")
    return value


def parse_line(line: str) -> Sample:
    """One statsd line (`airflow.ti.finish,dag_id=a,state=failed:1|c|@0.5`) -> Sample."""
    try:
        head, rest = line.rsplit(":", 1)
        fields = rest.split("|")
        raw_value, kind = fields[0], fields[1]
    except (ValueError, IndexError):
        raise BadLine(f"not a statsd line: {line[:80]!r}") from None
    parts = head.split(",")
    stat = parts[0]
    if stat.startswith(task_metrics.WIRE_PREFIX):
        return _task_metric(stat[len(task_metrics.WIRE_PREFIX):], parts[1:], raw_value, kind, line)
    if stat.startswith(PREFIX):
        stat = stat[len(PREFIX):]
    tags: dict[str, str] = {}
    for part in parts[1:]:
        k, sep, v = part.partition("=")
        if sep and k in LABELS and v:
            tags[LABELS[k]] = v
    for pattern, base, label in SPLIT_NAMES:
        m = pattern.match(stat)
        if m:
            stat, tags[label] = base, m.group(1)
            break
    value = _value(raw_value, line)
    rate = 1.0
    for f in fields[2:]:
        if f.startswith("@"):
            try:
                rate = float(f[1:]) or 1.0
            except ValueError:
                pass
    labels = tuple(sorted(tags.items()))
    name = prom_name(stat)
    if kind == "c":
        return Sample(name, "counter", labels, value / rate)
    if kind == "g":
        return Sample(name, "gauge", labels, value, delta=raw_value[:1] in "+-")
    if kind in ("ms", "h"):
        name += "_seconds"
        if name in LAST_VALUE_TIMERS:
            return Sample(name, "gauge", labels, value / 1000.0)
        dropped = HISTOGRAM_DROPPED_LABELS.get(name, frozenset())
        return Sample(name, "histogram", tuple(kv for kv in labels if kv[0] not in dropped), value / 1000.0)
    raise BadLine(f"unknown statsd type {kind!r} in {line[:80]!r}")


def _task_metric(name: str, tags: list[str], raw_value: str, kind: str, line: str) -> Sample:
    """A metric of a DAG author's own (airscale.task_metrics): its labels as sent, in the
    author's unit (a histogram is not taken for milliseconds)."""
    if not task_metrics.NAME.match(name):
        raise BadLine(f"bad task metric name in {line[:80]!r}")
    labels: dict[str, str] = {}
    for part in tags:
        k, sep, v = part.partition("=")
        if not (sep and v):
            continue
        if k in ("dag_id", "task_id"):
            labels[k] = v
        elif k.startswith(task_metrics.LABEL_PREFIX):
            key = k[len(task_metrics.LABEL_PREFIX):]
            if task_metrics.LABEL.match(key) and key not in task_metrics.RESERVED:
                labels[key] = v
    if len(labels) > task_metrics.MAX_LABELS + 2:
        raise BadLine(f"too many labels in {line[:80]!r}")
    value = _value(raw_value, line)
    kinds = {"c": "counter", "g": "gauge", "h": "histogram", "ms": "histogram"}
    if kind not in kinds:
        raise BadLine(f"unknown statsd type {kind!r} in {line[:80]!r}")
    # A task metric's gauge line always sets (a negative value is a value, not statsd's decrement).
    return Sample(task_metrics.PROM_PREFIX + name, kinds[kind], tuple(sorted(labels.items())), value)


class Store:
    """Current value of every translated series; thread-safe (the UDP thread writes, scrapes read).

    A counter or histogram series that is new shows 0 for its first `zero_seconds` (the scrape
    interval and a half): Prometheus' rate() and increase() need a sample before the first event,
    or a series born at 1 (a DAG's first failure, a second scheduler's first run) shows no
    increase at all. Any window as long as the scrape interval holds one scrape, so Prometheus
    always sees the 0, and the real value one scrape later.
    """

    def __init__(self, max_series: int = 2000, zero_seconds: float = 0.0, clock=time.monotonic,
                 task_series: int = 100, task_limits: dict[str, int] | None = None):
        self.max_series = max_series
        # DAG authors' metrics (airscale_custom_*): `task_series` label sets each, or their own
        # allowance from monitoring.task_metrics.metrics.
        self.task_series = task_series
        self.task_limits = dict(task_limits or {})
        self.zero_seconds = zero_seconds
        self._clock = clock
        self._born: dict[tuple[str, tuple], float] = {}
        self._lock = threading.Lock()
        self._kinds: dict[str, str] = {}
        self._values: dict[str, dict[tuple, float]] = {}
        self._hist: dict[str, dict[tuple, list]] = {}  # [bucket counts..., sum, count]
        self.dropped: dict[str, int] = {"cardinality": 0, "type_conflict": 0, "bad_line": 0}
        self.received = 0
        self._finished = {s: 0.0 for s in FINISH_STATES}

    def feed(self, packet: str) -> None:
        for line in packet.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                sample = parse_line(line)
            except BadLine:
                with self._lock:
                    self.dropped["bad_line"] += 1
                continue
            self.add(sample)

    def add(self, s: Sample) -> None:
        with self._lock:
            self.received += 1
            kind = self._kinds.setdefault(s.name, s.kind)
            if kind != s.kind:
                self.dropped["type_conflict"] += 1
                return
            table = self._hist if kind == "histogram" else self._values
            series = table.setdefault(s.name, {})
            if s.labels not in series:
                if len(series) >= self.limit_of(s.name):
                    self.dropped["cardinality"] += 1
                    return
                if kind != "gauge" and self.zero_seconds > 0:
                    self._born[(s.name, s.labels)] = self._clock()
            if kind == "counter":
                series[s.labels] = series.get(s.labels, 0.0) + s.value
                if s.name == "airflow_ti_finish":
                    state = dict(s.labels).get("state", "unknown")
                    if state in self._finished or len(self._finished) < 20:
                        self._finished[state] = self._finished.get(state, 0.0) + s.value
            elif kind == "gauge":
                series[s.labels] = (series.get(s.labels, 0.0) + s.value) if s.delta else s.value
            else:
                h = series.get(s.labels)
                if h is None:
                    h = series[s.labels] = [0] * len(BUCKETS) + [0.0, 0]
                for i, bound in enumerate(BUCKETS):
                    if s.value <= bound:
                        h[i] += 1
                h[-2] += s.value
                h[-1] += 1

    def limit_of(self, name: str) -> int:
        """Most label sets family `name` may keep."""
        if name.startswith(task_metrics.PROM_PREFIX):
            return self.task_limits.get(name[len(task_metrics.PROM_PREFIX):], self.task_series)
        return self.max_series

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            kinds = dict(self._kinds)
            values = {n: dict(v) for n, v in self._values.items()}
            hist = {n: {k: list(h) for k, h in v.items()} for n, v in self._hist.items()}
            finished = dict(self._finished)
            dropped = dict(self.dropped)
            received = self.received
            now = self._clock()
            young = {k for k, t in self._born.items() if now - t < self.zero_seconds}
            for k in [k for k in self._born if k not in young]:
                del self._born[k]
        for name, series in sorted(values.items()):
            kind = kinds[name]
            m = Metric(name, _help(name, kind), kind)
            for labels, v in series.items():
                v = 0.0 if (name, labels) in young else v
                m.add_sample(name + ("_total" if kind == "counter" else ""), dict(labels), v)
            yield m
        for name, series in sorted(hist.items()):
            m = Metric(name, _help(name, "histogram"), "histogram")
            for labels, h in series.items():
                if (name, labels) in young:
                    h = [0] * len(BUCKETS) + [0.0, 0]
                base = dict(labels)
                for i, bound in enumerate(BUCKETS):
                    m.add_sample(name + "_bucket", {**base, "le": _fmt(bound)}, h[i])
                m.add_sample(name + "_bucket", {**base, "le": "+Inf"}, h[-1])
                m.add_sample(name + "_sum", base, h[-2])
                m.add_sample(name + "_count", base, h[-1])
            yield m
        m = Metric("airscale_task_finished", "Task instances finished, by final state (all DAGs)", "counter")
        for state, v in sorted(finished.items()):
            m.add_sample("airscale_task_finished_total", {"state": state}, v)
        yield m
        m = Metric("airscale_statsd_lines", "statsd lines translated", "counter")
        m.add_sample("airscale_statsd_lines_total", {}, received)
        yield m
        m = Metric("airscale_statsd_dropped", "statsd lines dropped, by reason", "counter")
        for reason, v in sorted(dropped.items()):
            m.add_sample("airscale_statsd_dropped_total", {"reason": reason}, v)
        yield m


def _help(name: str, kind: str) -> str:
    if name.startswith(task_metrics.PROM_PREFIX):
        return f"Task metric {kind} published with airscale.task_metrics (see docs/metrics.md)"
    if kind == "histogram":
        return f"Airflow statsd timer {name}, seconds"
    return f"Airflow statsd {kind} {name} (see docs/metrics.md)"


def _fmt(bound: float) -> str:
    return repr(float(bound))
