"""A small client of the Airflow 3 REST API (v2), authenticated as the cluster's admin.

The REST API is used rather than the `airflow` CLI, whose every call costs 2-3 s of start-up.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import httpx

from airscale.errors import AirscaleError

TERMINAL_RUN_STATES = {"success", "failed"}


@dataclass(frozen=True)
class RunResult:
    dag_id: str
    run_id: str
    state: str
    tasks: list[dict]


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 10.0):
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=timeout)
        try:
            r = self._http.post("/auth/token", json={"username": username, "password": password})
        except httpx.HTTPError as e:
            raise AirscaleError(
                f"cannot reach the Airflow api-server at {base_url} ({e.__class__.__name__})",
                "check that the cluster is up: airscale status",
            ) from None
        if r.status_code >= 400:
            raise AirscaleError(f"login to {base_url} refused ({r.status_code})", "see airscale creds")
        self._http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        r = self._http.request(method, f"/api/v2{path}", **kw)
        if r.status_code >= 400:
            raise AirscaleError(f"{method} {path} failed: {r.status_code} {r.text[:300]}")
        return r

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self._http.get(f"/api/v2/dags/{dag_id}")
            if r.status_code == 200:
                return
            time.sleep(1.0)
        raise AirscaleError(
            f"DAG {dag_id!r} did not appear within {timeout:.0f}s",
            "check the DAG file for import errors: airscale logs dag-processor",
        )

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        r = self._call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return r.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        r = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return r.json()["task_instances"]

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1000}).json()["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, on_poll=None) -> RunResult:
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = self.run_state(dag_id, run_id)
                tis = self.task_instances(dag_id, run_id)
            except (httpx.TimeoutException, httpx.TransportError) as e:
                # A loaded api-server (it also serves every running task's Execution API) may
                # miss one poll; the reads are idempotent, so the next poll asks again.
                if time.monotonic() > deadline:
                    raise AirscaleError(
                        f"DAG run {run_id} of {dag_id}: the api-server did not answer ({e.__class__.__name__})",
                        "look at airscale status and airscale logs api-server",
                    ) from None
                time.sleep(1.0)
                continue
            if on_poll:
                on_poll(state, Counter(ti["state"] or "none" for ti in tis), len(tis))
            if state in TERMINAL_RUN_STATES:
                return RunResult(dag_id, run_id, state, tis)
            if time.monotonic() > deadline:
                raise AirscaleError(
                    f"DAG run {run_id} of {dag_id} not finished after {timeout:.0f}s (state {state})",
                    "look at airscale status and airscale logs scheduler-1",
                )
            time.sleep(1.0)
