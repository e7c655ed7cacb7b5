"""The airscale exporter: one process that Prometheus scrapes for everything Airflow-side.

- a UDP thread receives Airflow's statsd lines and keeps them as labeled series (`statsd.Store`);
- at scrape time, `MetadataCollector` reads gauges from the metadata database and
  `SupervisorCollector` reads which components run from the cluster's supervisord.

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

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

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


class SupervisorCollector:
    """Which components run, and how many workers each queue has against its bounds."""

    def __init__(self, socket_path: str, components: list[dict], queues: dict[str, dict]):
        self.socket_path = socket_path
        self.components = components
        self.queues = queues

    def describe(self) -> list:
        return []

    def _infos(self) -> dict[str, dict]:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return {i["name"]: i for i in proxy.supervisor.getAllProcessInfo()}

    def collect(self) -> Iterator[Metric]:
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
        for metric, doc, key in (
            ("airscale_workers_running", "Celery workers running, per queue", None),
            ("airscale_workers_min", "min_workers of the queue (spec)", "min_workers"),
            ("airscale_workers_max", "max_workers of the queue (spec)", "max_workers"),
        ):
            g = GaugeMetricFamily(metric, doc, labels=["queue"])
            for q, bounds in sorted(self.queues.items()):
                g.add_metric([q], workers.get(q, 0) if key is None else bounds[key])
            yield g


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
    store = Store(max_series=config.get("max_series", 2000), zero_seconds=config.get("new_series_zero_seconds", 0))
    registry.register(StatsdCollector(store))
    if dsn:
        import psycopg2

        registry.register(
            MetadataCollector(lambda: psycopg2.connect(dsn, connect_timeout=3),
                              list(config["queues"]), config.get("failure_window", "15m"))
        )
    if config.get("supervisor_socket"):
        registry.register(SupervisorCollector(config["supervisor_socket"], config["components"], config["queues"]))
    return registry, store


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    dsn_file = os.environ.get("AIRSCALE_EXPORTER_DSN_FILE")
    dsn = Path(dsn_file).read_text().strip() if dsn_file else None
    registry, store = build_registry(config, dsn)
    serve_statsd(store, config["statsd_host"], config["statsd_port"])
    start_http_server(config["port"], addr=config["host"], registry=registry)
    print(f"airscale exporter: metrics on {config['host']}:{config['port']}, statsd on udp "
          f"{config['statsd_host']}:{config['statsd_port']}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
