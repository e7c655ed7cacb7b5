"""The soak's load: DAG runs triggered at a steady, compressed rate through the REST API.

The full soak plays the bench's 500-DAG / 50,000-tasks-a-day profile (airscale.bench.profile:
5-task DAGs, triggered round-robin) compressed `load` times, among `dags` DAG files in all: the
profile's 500 active ones and, past them, paused hourly DAGs that the dag-processor parses like
any other file and that never run (`parse_dag_file`). The short soak of `make test` triggers
the drill workload's DAG on the shared default cluster instead (no new file to wait for).

Runs get our own run ids: a trigger retried after a timeout then gets 409, not a second run,
and a run that a retried trigger did create is not counted twice.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from airscale.bench import profile as prof

TRIGGER_ATTEMPTS = 10


@dataclass(frozen=True)
class Load:
    dag_ids: tuple[str, ...]
    runs_per_s: float
    tasks_per_run: int
    conf: dict = field(default_factory=dict)
    burst: int = 0  # runs triggered at once before the beat starts (`due_at`)


def due_at(k: int, runs_per_s: float, burst: int) -> float:
    """Seconds after the start when run `k` is triggered (pure): the first `burst` at once, so
    that every task slot of the cluster runs a task early in warm-up (a pool process copies its
    parent's pages at its first task: a cache filled, not growth), then one every 1/runs_per_s."""
    return max(0, k - burst) / runs_per_s


def profile_load(load: float, dags: int) -> tuple[prof.Profile, Load]:
    """The 50k/day profile compressed `load` times over min(500, dags) active DAGs."""
    p = prof.Profile(dags=min(500, dags), compression=load, prefix="airscale_soak")
    return p, Load(tuple(p.dag_id(i) for i in range(p.dags)), p.run_rate, prof.TASKS_PER_RUN)


def write_dag_files(folder: Path, p: prof.Profile, dags: int) -> int:
    """The profile's active DAG files, then paused parse-only ones up to `dags` files in all."""
    folder.mkdir(parents=True, exist_ok=True)
    # The parse-only files first: the dag-processor parses the newest files first
    # ([dag_processor] file_parsing_sort_mode modified_time), so the load's DAGs are ready sooner.
    for i in range(p.dags, dags):
        (folder / f"airscale_soak_parse_{i:04d}.py").write_text(prof.parse_dag_file("airscale_soak_parse", i))
    for i in range(p.dags):
        (folder / f"{p.dag_id(i)}.py").write_text(prof.profile_dag_file(p, i))
    return dags


class Trigger:
    """Triggers the load's runs on its beat in a thread until `stop()`; `run_ids` are the runs
    that the API confirmed (201, or 409: a retry of a trigger whose answer was lost)."""

    def __init__(self, base_url: str, username: str, password: str, load: Load, tag: str,
                 token: str | None = None):
        self.base_url, self.username, self.password, self.load, self.tag = base_url, username, password, load, tag
        self.run_ids: list[tuple[str, str]] = []  # (dag_id, run_id)
        self.failed: list[tuple[str, str, str]] = []  # (dag_id, run_id, why)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-trigger", daemon=True)
        self._token: str | None = token

    def start(self) -> Trigger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _login(self, http: httpx.Client) -> None:
        r = http.post("/auth/token", json={"username": self.username, "password": self.password})
        r.raise_for_status()
        self._token = r.json()["access_token"]
        http.headers["Authorization"] = f"Bearer {self._token}"

    def _call(self, http: httpx.Client, method: str, path: str, json: dict) -> str | None:
        """None once the call is done (for a trigger: the run exists now, 409 included); else
        why not, after TRIGGER_ATTEMPTS tries."""
        why = ""
        for attempt in range(TRIGGER_ATTEMPTS):
            try:
                if self._token is None:
                    self._login(http)
                r = http.request(method, path, json=json)
                if r.status_code in (200, 201, 409):
                    return None
                if r.status_code == 401:
                    self._token = None
                why = f"{r.status_code} {r.text[:100]}"
            except httpx.HTTPError as e:
                why = e.__class__.__name__
            if self._stop.wait(min(10.0, 1.0 + attempt)):
                break
        return why

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            if self._token is not None:
                http.headers["Authorization"] = f"Bearer {self._token}"
            unpaused: set[str] = set()
            t0 = time.monotonic()
            k = 0
            while not self._stop.is_set():
                wait = t0 + due_at(k, self.load.runs_per_s, self.load.burst) - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                dag_id = self.load.dag_ids[k % len(self.load.dag_ids)]
                run_id = f"{self.tag}-{k:06d}"
                k += 1
                # Unpaused on its first run, not all before the first: the load starts at once.
                if dag_id not in unpaused:
                    why = self._call(http, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
                    if why is not None:
                        self.failed.append((dag_id, run_id, f"unpause: {why}"))
                        continue
                    unpaused.add(dag_id)
                why = self._call(http, "POST", f"/api/v2/dags/{dag_id}/dagRuns",
                                 {"dag_run_id": run_id, "logical_date": None, "conf": self.load.conf})
                if why is None:
                    self.run_ids.append((dag_id, run_id))
                else:
                    self.failed.append((dag_id, run_id, why))
