"""A statsd sink inside the bench process: Airflow's own timers, read without the monitoring stack.

The bench runs both clusters without airscale's exporter (its CPU would count against the
cluster being measured), but some figures only exist as statsd metrics: the scheduler times
every loop (`scheduler.scheduler_loop_duration`, a timer in ms, airflow/jobs/scheduler_job_runner.py)
and the dag-processor reports the time of each full pass over the files
(`dag_processing.total_parse_time`, a gauge in seconds, airflow/dag_processing/manager.py).
Both clusters send plain statsd lines over UDP to a listener here, each on its own port;
`parse_packet` is pure, `Listener` only receives and stamps each sample with the time it
arrived.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

LOOP_DURATION = "scheduler.scheduler_loop_duration"
TOTAL_PARSE_TIME = "dag_processing.total_parse_time"
PREFIX = "airflow"


@dataclass(frozen=True)
class Sample:
    name: str  # without the prefix
    value: float
    kind: str  # ms | g | c | ...


def parse_packet(data: bytes, prefix: str = PREFIX) -> list[Sample]:
    """Samples of one UDP packet (statsd allows several lines per packet); lines that are not
    `name:value|type[|@rate]` are skipped, as a statsd server does."""
    out: list[Sample] = []
    for line in data.decode("utf-8", "replace").splitlines():
        name, sep, rest = line.strip().partition(":")
        if not sep:
            continue
        fields = rest.split("|")
        if len(fields) < 2:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if prefix and name.startswith(prefix + "."):
            name = name[len(prefix) + 1:]
        out.append(Sample(name, value, fields[1]))
    return out


def settings(port: int) -> dict[str, object]:
    """Airflow's `[metrics]` for sending plain statsd to the bench's listener on `port`."""
    return {"statsd_on": True, "statsd_host": "127.0.0.1", "statsd_port": port, "statsd_prefix": PREFIX}


class Listener:
    """Receives statsd packets on 127.0.0.1:`port` in a thread; keeps (arrival, sample) of the
    metric names asked for (a busy cluster sends thousands of other lines)."""

    def __init__(self, port: int, names: tuple[str, ...] = (LOOP_DURATION, TOTAL_PARSE_TIME)):
        self.port = port
        self.names = set(names)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind(("127.0.0.1", port))
        self._sock.settimeout(0.5)
        self._lock = threading.Lock()
        self._samples: list[tuple[float, Sample]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"statsd-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            keep = [s for s in parse_packet(data) if s.name in self.names]
            if keep:
                with self._lock:
                    self._samples.extend((now, s) for s in keep)

    def values(self, name: str, since: float = float("-inf"), until: float = float("inf")) -> list[float]:
        """Values of `name` that arrived between two time.monotonic() readings."""
        with self._lock:
            return [s.value for t, s in self._samples if s.name == name and since <= t <= until]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
