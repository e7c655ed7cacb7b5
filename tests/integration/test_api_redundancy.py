"""The api-server made redundant (airscale.runtime.api_servers), on the shared default cluster:
two instances behind HAProxy. One instance is killed (kill -9 of its process tree, PID from the
cluster's supervisor) while DAG runs with tasks are going and a prober asks the REST API and the
Execution API every 0.2 s: every probe is answered, every task succeeds at its first try, and the
supervisor brings the instance back into HAProxy's rotation.
"""

from __future__ import annotations

import time
import uuid

import pytest

from airscale.drills import workload
from airscale.runtime.airflow_config import api_url
from airscale.runtime.procs import kill_tree
from airscale.soak.probe import EXECUTION, REST, Prober
from airscale.workload.client import AirflowClient

pytestmark = [pytest.mark.integration]

RUNS = 3


def running_tasks(cluster, run_ids: list[str]) -> int:
    return cluster.query("SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) "
                         "AND state = 'running'", workload.DAG_ID, run_ids)[0][0]


@pytest.mark.timeout(400)
def test_one_api_server_dies_and_nobody_notices(healthy_default):
    cluster = healthy_default.cluster
    spec = cluster.spec
    assert spec.api_server.count == 2
    names = [c.name for c in cluster.components() if c.kind == "api-server"]
    assert names == ["api-server-1", "api-server-2"]
    rows = {r["component"]: r for r in cluster.status()}
    assert rows["api-proxy"]["healthy"] and "2/2 api-servers in rotation" in rows["api-proxy"]["health"]
    for n in names:
        assert rows[n]["healthy"] and "HAProxy: UP" in rows[n]["health"], rows[n]

    password = cluster.secrets().admin_password
    # Generous timeouts: on a shared 2-core machine an answer can take seconds; what must not
    # happen is no answer at all.
    client = AirflowClient(api_url(spec), "admin", password, timeout=60)
    prober = Prober(api_url(spec), "admin", password, interval=0.2, timeout=60).start()
    try:
        client.unpause(workload.DAG_ID)
        tag = uuid.uuid4().hex[:6]
        run_ids = []
        for i in range(RUNS):
            run_id = f"api-redundancy-{tag}-{i}"
            r = client._call("POST", f"/dags/{workload.DAG_ID}/dagRuns",
                             json={"dag_run_id": run_id, "logical_date": None, "conf": {"seconds": 4}})
            run_ids.append(r.json()["dag_run_id"])
        deadline = time.monotonic() + 120
        while running_tasks(cluster, run_ids) < 2:
            assert time.monotonic() < deadline, "no task of the runs started"
            time.sleep(0.5)

        victim = "api-server-1"
        old_pid = int(cluster.supervisor.info(victim)["pid"])
        killed_at = time.time()
        assert len(kill_tree(old_pid, cluster.layout.forkserver_socket)) >= 1

        # Tasks keep starting, heartbeating and finishing through the other instance.
        deadline = time.monotonic() + 240
        while True:
            states = dict(cluster.query("SELECT run_id, state FROM dag_run WHERE dag_id = %s AND run_id = ANY(%s)",
                                        workload.DAG_ID, run_ids))
            if all(s in ("success", "failed") for s in states.values()) and len(states) == RUNS:
                break
            assert time.monotonic() < deadline, states
            time.sleep(1)
        # The instance comes back (the restart listener) and HAProxy sends it requests again.
        deadline = time.monotonic() + 180
        while True:
            info = cluster.supervisor.info(victim)
            h = cluster.health_of([cluster.component(victim)], cluster.secrets())[victim]
            if info["statename"] == "RUNNING" and info["pid"] != old_pid and h.ok:
                break
            assert time.monotonic() < deadline, (info["statename"], h)
            time.sleep(1)
        back_after = time.time() - killed_at
    finally:
        probes = prober.stop()
        client.close()

    assert set(states.values()) == {"success"}, states
    tis = cluster.query("SELECT state, try_number, count(*) FROM task_instance WHERE dag_id = %s "
                        "AND run_id = ANY(%s) GROUP BY 1, 2", workload.DAG_ID, run_ids)
    assert tis == [("success", 1, RUNS * workload.TASKS_PER_RUN)], tis
    during = [p for p in probes if p.at >= killed_at - 1]
    by_endpoint = {e: [p for p in during if p.endpoint == e] for e in (REST, EXECUTION)}
    # At 0.2 s a probe from the kill until the instance was back: hundreds of probes per endpoint.
    assert all(len(ps) >= back_after for ps in by_endpoint.values()), {e: len(ps) for e, ps in by_endpoint.items()}
    failed = [p for p in probes if not p.ok]
    assert not failed, failed[:10]
    print(f"api-server-1 back in rotation {back_after:.0f}s after the kill; {len(probes)} probes, "
          f"slowest {max(p.latency_s for p in probes):.2f}s")
    healthy_default.wait_healthy()
