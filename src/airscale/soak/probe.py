"""The prober: asks the cluster's public endpoints, on a fixed beat, whether they answer.

One thread per endpoint, so a slow answer of one does not delay the other's probes:

- `rest`: `GET /api/v2/dags?limit=1` as the admin (a real REST call: authentication, a database
  read), what a person or a script meets;
- `execution`: `GET /execution/health`, the Execution API every task's start, heartbeat and
  finish goes through.

Each probe is recorded with its start time, latency and outcome; the verdict
(airscale.soak.verdict) decides what counts as answered. A probe waits `timeout` seconds at most
(longer than the verdict's 2 s, so slow answers are measured rather than cut off); the next one
starts on the next beat, or at once when a probe took longer than the beat.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

REST = "rest"
EXECUTION = "execution"
PATHS = {REST: "/api/v2/dags?limit=1", EXECUTION: "/execution/health"}


@dataclass(frozen=True)
class Probe:
    at: float  # epoch seconds the request was sent
    endpoint: str  # REST | EXECUTION
    latency_s: float
    status: int | None  # HTTP status; None: no answer (connection refused, timeout)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


class Prober:
    """Probes `base_url` every `interval` seconds per endpoint until `stop()`."""

    def __init__(self, base_url: str, username: str, password: str, interval: float = 1.0,
                 timeout: float = 10.0, clock: Callable[[], float] = time.time, token: str | None = None):
        self.base_url, self.username, self.password = base_url, username, password
        self.interval, self.timeout, self.clock = interval, timeout, clock
        self.probes: list[Probe] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(e,), name=f"probe-{e}", daemon=True)
                         for e in PATHS]
        # A token from the caller spares a login (FAB checks the password with a deliberately slow
        # hash, on the api-server's CPU); a 401 logs in again.
        self._token: str | None = token

    def start(self) -> Prober:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[Probe]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)
        return self.snapshot()

    def snapshot(self) -> list[Probe]:
        with self._lock:
            return list(self.probes)

    def _login(self, http: httpx.Client) -> None:
        r = http.post("/auth/token", json={"username": self.username, "password": self.password})
        r.raise_for_status()
        self._token = r.json()["access_token"]

    def _loop(self, endpoint: str) -> None:
        # A client per thread; keep-alive like a real client (HAProxy keeps the server side apart).
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as http:
            nxt = time.monotonic()
            while not self._stop.is_set():
                self._record(self._probe(http, endpoint))
                nxt += self.interval
                delay = nxt - time.monotonic()
                if delay < 0:
                    nxt = time.monotonic()
                elif self._stop.wait(delay):
                    break

    def _probe(self, http: httpx.Client, endpoint: str) -> Probe:
        at, t0 = self.clock(), time.monotonic()
        try:
            headers = {}
            if endpoint == REST:
                if self._token is None:
                    self._login(http)
                headers["Authorization"] = f"Bearer {self._token}"
            r = http.get(PATHS[endpoint], headers=headers)
            if r.status_code == 401 and endpoint == REST:  # token expired: log in again, once
                self._token = None
                self._login(http)
                r = http.get(PATHS[endpoint], headers={"Authorization": f"Bearer {self._token}"})
            return Probe(at, endpoint, time.monotonic() - t0, r.status_code,
                         "" if r.status_code == 200 else r.text[:120])
        except httpx.HTTPError as e:
            return Probe(at, endpoint, time.monotonic() - t0, None, e.__class__.__name__)

    def _record(self, p: Probe) -> None:
        with self._lock:
            self.probes.append(p)
