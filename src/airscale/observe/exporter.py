"""The airscale exporter: one process that Prometheus scrapes for everything Airflow-side.

- a UDP thread receives Airflow's statsd lines and keeps them as labeled series (`statsd.Store`);
- at scrape time, `MetadataCollector` reads gauges from the metadata database and
  `SupervisorCollector` reads which components run from the cluster's supervisord;
- one scrape renders at a time (`OneScrapeAtATime`): the statsd series of 500 DAGs render to
  about 11 MiB of text, which on a busy host took longer than the scrape interval, and the
  renders that overlapped each held a copy.

Run by supervisord: `python -m airscale.observe.exporter CONFIG.json`, with the database DSN in
the file named by AIRSCALE_EXPORTER_DSN_FILE (mode 0600), never on the command line.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer

from airscale.observe.dbmetrics import MetadataCollector
from airscale.observe.statsd import Store


class StatsdCollector:
    def __init__(self, store: Store):
        self.store = store

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self.store.collect()


# supervisord state -> airscale_component_up. STOPPED/STOPPING (on purpose) and STARTING (not
# yet known) are left out, so `airscale up`, `down` and `stop` raise no ComponentDown.
COMPONENT_UP = {"RUNNING": 1, "EXITED": 0, "BACKOFF": 0, "FATAL": 0, "UNKNOWN": 0}


def component_states(components: list[dict], infos: dict[str, dict],
                     queues: dict[str, dict]) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """(component, kind) -> up value, and running workers per queue, from supervisord infos (pure)."""
    ups: dict[tuple[str, str], int] = {}
    workers = {q: 0 for q in queues}
    for c in components:
        state = infos.get(c["name"], {}).get("statename")
        if c["kind"] == "worker" and state == "RUNNING":
            workers[c["queue"]] = workers.get(c["queue"], 0) + 1
        if state in COMPONENT_UP:
            ups[(c["name"], c["kind"])] = COMPONENT_UP[state]
    return ups, workers


class QueueBoundsCollector:
    """Each queue's worker bounds from the spec: wherever the workers run (under supervisord or
    as Kubernetes pods), rules and panels compare the running workers with them."""

    def __init__(self, queues: dict[str, dict]):
        self.queues = queues

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Metric]:
        for metric, doc, key in (
            ("airscale_workers_min", "min_workers of the queue (spec)", "min_workers"),
            ("airscale_workers_max", "max_workers of the queue (spec)", "max_workers"),
        ):
            g = GaugeMetricFamily(metric, doc, labels=["queue"])
            for q, bounds in sorted(self.queues.items()):
                g.add_metric([q], bounds[key])
            yield g


class SupervisorCollector:
    """Which components run, and how many workers each queue has."""

    def __init__(self, socket_path: str, components: list[dict], queues: dict[str, dict],
                 restarts_file: str | None = None, data_dir: str | None = None):
        self.socket_path = socket_path
        self.data_dir = data_dir
        self.components = components
        self.queues = queues
        self.restarts_file = restarts_file

    def describe(self) -> list:
        return []

    def _infos(self) -> dict[str, dict]:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return {i["name"]: i for i in proxy.supervisor.getAllProcessInfo()}

    def collect(self) -> Iterator[Metric]:
        if self.data_dir:
            yield from data_disk(self.data_dir)
        try:
            infos = self._infos()
        except (OSError, xmlrpc.client.Error):
            return
        up = GaugeMetricFamily(
            "airscale_component_up",
            "1 if the component runs, 0 if it died (exited, keeps failing, or supervisord gave up); "
            "components stopped on purpose (airscale stop/down, standby workers) are left out",
            labels=["component", "kind"],
        )
        ups, workers = component_states(self.components, infos, self.queues)
        for (name, kind), value in ups.items():
            up.add_metric([name, kind], value)
        yield up
        running = GaugeMetricFamily("airscale_workers_running", "Celery workers running, per queue", labels=["queue"])
        for q in sorted(self.queues):
            running.add_metric([q], workers.get(q, 0))
        yield running
        if self.restarts_file:
            yield self._restarts()

    def _restarts(self) -> CounterMetricFamily:
        try:
            counts = json.loads(Path(self.restarts_file).read_text())
        except (OSError, ValueError):
            counts = {}
        c = CounterMetricFamily(
            "airscale_component_restarts",
            "Times the restart listener restarted the component after it died (kill, crash)",
            labels=["component", "kind"],
        )
        for name, kind in restart_series(self.components, counts):
            c.add_metric([name, kind], counts.get(name, {}).get("restarts", 0))
        return c


def data_disk(path: str) -> Iterator[Metric]:
    """Size and free space of the file system under the data folder: PostgreSQL, Redis, logs
    and supervision state all write there, and a full disk stops each in its own way."""
    try:
        st = os.statvfs(path)
    except OSError:
        return
    for metric, doc, value in (
        ("airscale_data_disk_size_bytes", "Size of the file system holding the cluster's data folder",
         st.f_blocks * st.f_frsize),
        # f_bavail: what an unprivileged writer (PostgreSQL, Redis) can still use.
        ("airscale_data_disk_free_bytes", "Bytes free for the cluster's processes on that file system",
         st.f_bavail * st.f_frsize),
    ):
        g = GaugeMetricFamily(metric, doc)
        g.add_metric([], value)
        yield g


def backup_success_time(raw: object) -> float | None:
    """When the last good scheduled backup ended, as a Unix time (pure), from the schedule's
    record (airscale.backup.schedule.State as JSON). Before the first good one: when the
    schedule began, so a cluster that never managed a backup ages like one whose last is old."""
    if not isinstance(raw, dict):
        return None
    from datetime import datetime

    for key in ("last_ok_at", "since"):
        value = raw.get(key)
        if value:
            try:
                return datetime.fromisoformat(value).timestamp()
            except (TypeError, ValueError):
                return None
    return None


class BackupCollector:
    """airscale_backup_last_success_timestamp_seconds, read from the backup schedule's record."""

    def __init__(self, state_file: str):
        self.state_file = state_file

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            raw = json.loads(Path(self.state_file).read_text())
        except (OSError, ValueError):
            return  # no record yet: the component has not started
        when = backup_success_time(raw)
        if when is None:
            return
        g = GaugeMetricFamily("airscale_backup_last_success_timestamp_seconds",
                              "Unix time the last good scheduled backup ended (before the first: when "
                              "the schedule began)")
        g.add_metric([], when)
        yield g


def restart_series(components: list[dict], counts: dict[str, dict]) -> list[tuple[str, str]]:
    """(component, kind) of every restart counter to export (pure). Every component gets a
    series from the start, at 0, so that Prometheus's increase() sees its first restart."""
    kinds = {c["name"]: c["kind"] for c in components}
    return sorted({(n, kinds.get(n, "other")) for n in [*kinds, *counts]})


def serve_statsd(store: Store, host: str, port: int) -> threading.Thread:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    # A busy cluster sends bursts of thousands of lines: a larger buffer drops fewer of them.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((host, port))

    def loop() -> None:
        while True:
            data, _ = sock.recvfrom(65535)
            store.feed(data.decode("utf-8", "replace"))

    t = threading.Thread(target=loop, name="statsd", daemon=True)
    t.start()
    return t


def build_registry(config: dict, dsn: str | None) -> tuple[CollectorRegistry, Store]:
    registry = CollectorRegistry()
    store = Store(max_series=config.get("max_series", 2000), zero_seconds=config.get("new_series_zero_seconds", 0),
                  task_series=config.get("task_series", 100), task_limits=config.get("task_limits"))
    registry.register(StatsdCollector(store))
    if dsn:
        import psycopg2

        registry.register(
            MetadataCollector(lambda: psycopg2.connect(dsn, connect_timeout=3),
                              list(config["queues"]), config.get("failure_window", "15m"))
        )
    if config.get("queues"):
        registry.register(QueueBoundsCollector(config["queues"]))
    if config.get("supervisor_socket"):
        registry.register(SupervisorCollector(config["supervisor_socket"], config["components"], config["queues"],
                                              config.get("restarts_file"), config.get("data_dir")))
    if config.get("backup_state_file"):
        registry.register(BackupCollector(config["backup_state_file"]))
    return registry, store


def in_cluster_config(spec, listen: str, port: int | None = None, statsd_port: int | None = None) -> dict:
    """The exporter's config outside a local cluster (pure): every interface of the pod, no
    supervisord (the chart runs the components), Airflow's statsd straight from its pods.

    Ports: the ones given (the Kubernetes rendering passes its own, deploy/k8s/ports.py), else
    the spec's local block."""
    ports = spec.ports
    return {
        "host": listen, "port": port or ports.exporter, "statsd_host": listen,
        "statsd_port": statsd_port or ports.statsd,
        "failure_window": spec.monitoring.thresholds.failure_window,
        "new_series_zero_seconds": 1.5 * spec.monitoring.scrape_interval_seconds,
        "task_series": spec.monitoring.task_metrics.max_series,
        "task_limits": dict(spec.monitoring.task_metrics.metrics),
        "queues": {q: {"min_workers": s.min_workers, "max_workers": s.max_workers} for q, s in spec.queues.items()},
        "components": [],
    }


def libpq_url(sqlalchemy_url: str) -> str:
    """postgresql+psycopg2://... (Airflow's form, in the chart's metadata Secret) -> libpq's form."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return ("postgresql://" + rest) if sep and scheme.startswith("postgresql") else sqlalchemy_url


TEXT_FORMAT = "text/plain; version=0.0.4"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class OneScrapeAtATime:
    """A WSGI app around prometheus_client's that renders one scrape at a time.

    A request that arrives while a render runs waits for it and is answered with its result,
    if it asked the same thing, instead of rendering a copy of its own: Prometheus gives up on a
    slow scrape and asks again at its next interval, so renders slower than the interval (a busy
    host, a slow database or supervisord) would otherwise pile up, each holding the text it has
    rendered so far. A request that arrives after a render finished gets a new
    one: nothing older than the request is served. Only the last response is kept.
    """

    def __init__(self, app, clock=time.monotonic):
        self.app = app
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[tuple, float, str, list, bytes] | None = None
        self.renders = 0

    @staticmethod
    def _key(environ: dict) -> tuple:
        return (environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""))

    def __call__(self, environ: dict, start_response):
        # Prometheus asks for OpenMetrics first; the classic text format carries all this
        # exporter has (no exemplars) and renders in half the CPU (1.2 against 2.1 s for the
        # series of 500 DAGs on this host).
        environ = {**environ, "HTTP_ACCEPT": TEXT_FORMAT}
        key, asked = self._key(environ), self._clock()
        with self._lock:
            last = self._last
            if last is None or last[0] != key or last[1] <= asked:
                answer: dict = {}

                def keep(status, headers, exc_info=None):
                    answer["status"], answer["headers"] = status, headers

                body = b"".join(self.app(environ, keep))
                self.renders += 1
                last = self._last = (key, self._clock(), answer["status"], answer["headers"], body)
        start_response(last[2], list(last[3]))
        return [last[4]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        """Prometheus scrapes every few seconds: no access log line for each."""


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> ThreadingWSGIServer:
    """/metrics on host:port, served from a daemon thread (a thread per request). Compressed
    only beyond loopback: gzip of 11 MiB of text costs 0.3 s of CPU a scrape, to save nothing
    on a connection inside the host."""
    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    app = make_wsgi_app(registry, disable_compression=host in LOOPBACK)
    httpd = make_server(host, port, OneScrapeAtATime(app), Server, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd


def serve(config: dict, dsn: str | None) -> None:
    registry, store = build_registry(config, dsn)
    serve_statsd(store, config["statsd_host"], config["statsd_port"])
    serve_metrics(registry, config["host"], config["port"])
    print(f"airscale exporter: metrics on {config['host']}:{config['port']}, statsd on udp "
          f"{config['statsd_host']}:{config['statsd_port']}", flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    dsn_file = os.environ.get("AIRSCALE_EXPORTER_DSN_FILE")
    dsn = Path(dsn_file).read_text().strip() if dsn_file else None
    serve(config, dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
