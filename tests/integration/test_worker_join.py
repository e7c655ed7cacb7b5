"""`airscale worker join` across two network namespaces: the cluster in one, a worker in the other.

Two namespaces joined by a veth pair stand for two hosts: the only way between them is the
veth link (10.x addresses that exist only inside these namespaces). The cluster listens on
its veth address with passwords (PostgreSQL SCRAM, Redis requirepass); the joining worker
consumes the `remote` queue only. A DAG with one task on `remote` and one on `default` shows
where each ran (task_instance.hostname, written by the process that ran it) and that the
api-server fetches the remote task's log from the worker's log server.

Needs root (ip netns); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from airscale.runtime.layout import Layout
from airscale.runtime.procs import cluster_pids, end_processes
from tests.conftest import REPO, reachable_tmpdir, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 (ip netns)", allow_module_level=True)

TAG = f"{os.getpid() % 100000}"
NS_CLUSTER = f"airscale-c{TAG}"
NS_WORKER = f"airscale-w{TAG}"
SUBNET = f"10.231.{os.getpid() % 250}"
CLUSTER_IP = f"{SUBNET}.1"
WORKER_IP = f"{SUBNET}.2"
BASE_PORT = 29600  # inside a fresh network namespace: collides with nothing on the host

DAG = '''
import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def airscale_remote_check():
    @task(queue="remote")
    def on_remote():
        print("AIRSCALE-REMOTE-MARKER")
        return "remote"

    @task(queue="default")
    def on_local():
        return "local"

    on_remote() >> on_local()


airscale_remote_check()
'''

# Runs inside the cluster's namespace: trigger a run and report task states after a while.
PROBE_NO_WAIT = '''
import json, sys, time
from airscale.spec import load_spec
from airscale.runtime.airflow_config import api_url
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import load
from airscale.workload.client import AirflowClient

spec = load_spec(sys.argv[1])
c = AirflowClient(api_url(spec), "admin", load(Layout(spec.data_path).secrets_file).admin_password, timeout=30)
run_id = c.trigger("airscale_remote_check")
time.sleep(float(sys.argv[2]))
print(json.dumps({t["task_id"]: t["state"] for t in c.task_instances("airscale_remote_check", run_id)}))
'''

# Runs inside the cluster's namespace, where the api-server is reachable.
PROBE = '''
import json, sys
from airscale.spec import load_spec
from airscale.runtime.airflow_config import api_url
from airscale.runtime.layout import Layout
from airscale.runtime.secrets import load
from airscale.workload.client import AirflowClient

spec = load_spec(sys.argv[1])
c = AirflowClient(api_url(spec), "admin", load(Layout(spec.data_path).secrets_file).admin_password, timeout=30)
c.wait_for_dag("airscale_remote_check", timeout=240)
c.unpause("airscale_remote_check")
run_id = c.trigger("airscale_remote_check")
result = c.wait_for_run("airscale_remote_check", run_id, timeout=300)
log = c._call("GET", f"/dags/airscale_remote_check/dagRuns/{run_id}/taskInstances/on_remote/logs/1",
              headers={"Accept": "application/json"}).json()
print(json.dumps({"state": result.state, "tasks": result.tasks, "log": json.dumps(log)}))
'''


def sh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def in_ns(ns: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def airscale_in(ns: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return in_ns(ns, sys.executable, "-m", "airscale.cli", *args, timeout=timeout)


@pytest.fixture(scope="module")
def two_hosts():
    veth_c, veth_w = f"asc{TAG}", f"asw{TAG}"
    sh("ip", "netns", "add", NS_CLUSTER)
    try:
        sh("ip", "netns", "add", NS_WORKER)
        sh("ip", "link", "add", veth_c, "type", "veth", "peer", "name", veth_w)
        sh("ip", "link", "set", veth_c, "netns", NS_CLUSTER)
        sh("ip", "link", "set", veth_w, "netns", NS_WORKER)
        for ns, dev, ip in ((NS_CLUSTER, veth_c, CLUSTER_IP), (NS_WORKER, veth_w, WORKER_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        # Deleting a namespace deletes the veth end inside it, and with it the pair.
        sh("ip", "netns", "del", NS_WORKER, check=False)
        sh("ip", "netns", "del", NS_CLUSTER, check=False)


@pytest.fixture(scope="module")
def cluster_spec(two_hosts):
    d = reachable_tmpdir("airscale-join-")
    (d / "dags").mkdir()
    (d / "dags" / "airscale_remote_check.py").write_text(DAG)
    spec = write_spec(d, {
        "cluster": {"name": "join", "data_dir": str(d / "data"), "base_port": BASE_PORT,
                    "listen_host": CLUSTER_IP},
        "schedulers": {"count": 1},
        "queues": {"default": {"min_workers": 1, "max_workers": 1, "concurrency": 4},
                   "remote": {"min_workers": 0, "max_workers": 1, "concurrency": 2}},
        "workers": {"drain_timeout": 30},
        # The remote queue's worker joins from the other host: no local autoscaler may start one.
        "autoscaling": {"enabled": False},
        "dags_folder": str(d / "dags"),
    })
    up = airscale_in(NS_CLUSTER, "up", "-s", str(spec))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield spec, d
    finally:
        cluster_id_file = Layout(d / "data").cluster_id_file
        cluster_id = cluster_id_file.read_text().strip() if cluster_id_file.exists() else None
        down = airscale_in(NS_CLUSTER, "down", "--purge", "-s", str(spec), timeout=300)
        # Never leave this cluster running: end whatever carries its marker, by PID.
        left = cluster_pids(cluster_id) if cluster_id else []
        if left:
            end_processes(left, grace=30)
        subprocess.run(["rm", "-rf", str(d)], check=False)
        assert down.returncode == 0, f"airscale down failed:\n{down.stdout}\n{down.stderr}"
        assert not left, f"airscale down left {len(left)} process(es) of the cluster running"


@pytest.fixture(scope="module")
def remote_worker(cluster_spec):
    spec, d = cluster_spec
    # The copy a user would scp to the worker host, mode 0600.
    secrets = d / "worker-secrets.json"
    shutil.copy(d / "data" / "secrets.json", secrets)
    os.chmod(secrets, 0o600)
    log = open(d / "remote-worker.log", "w")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NS_WORKER, sys.executable, "-m", "airscale.cli", "worker", "join",
         "-s", str(spec), "--queue", "remote", "--cluster-host", CLUSTER_IP, "--advertise-host", WORKER_IP,
         "--secrets", str(secrets), "--data-dir", str(d / "remote-host"), "--name", "rw"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
    )
    try:
        yield proc, d
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def test_remote_queue_tasks_run_on_the_remote_host(remote_worker, cluster_spec) -> None:
    proc, d = remote_worker
    spec, _ = cluster_spec
    probe = d / "probe.py"
    probe.write_text(PROBE)
    out = in_ns(NS_CLUSTER, sys.executable, str(probe), str(spec), timeout=600)
    worker_log = (d / "remote-worker.log").read_text()
    assert out.returncode == 0, out.stdout + out.stderr + "\nremote worker:\n" + worker_log[-3000:]
    assert proc.poll() is None, "the joined worker exited:\n" + worker_log[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["state"] == "success", result
    tasks = {t["task_id"]: t for t in result["tasks"]}
    assert tasks["on_remote"]["queue"] == "remote" and tasks["on_remote"]["hostname"] == WORKER_IP
    assert tasks["on_local"]["queue"] == "default"
    assert tasks["on_local"]["hostname"].startswith("worker-default-1."), tasks["on_local"]
    # The api-server (cluster namespace) read the task's log from the worker's log server.
    assert "AIRSCALE-REMOTE-MARKER" in result["log"], result["log"][:2000]


def test_drain_hook_stops_the_real_airflow_worker_from_taking_tasks(remote_worker, cluster_spec) -> None:
    """The worker pods' preStop hook, run as Kubernetes would (the script alone, Airflow's own
    Celery app from AIRFLOW_CONFIG) against the joined Airflow worker: afterwards a task routed
    to its queue stays queued. Runs last: the worker no longer consumes."""
    import socket

    proc, d = remote_worker
    spec, _ = cluster_spec
    hook = REPO / "src" / "airscale" / "deploy" / "drain_hook.py"
    cfg = d / "remote-host" / "airflow" / "airflow.cfg"
    r = in_ns(NS_WORKER, "env", f"AIRFLOW_CONFIG={cfg}", f"AIRFLOW_HOME={cfg.parent}", sys.executable, str(hook),
              "--timeout", "60", "--poll", "1", "--node", f"rw@{socket.gethostname()}", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stopped consuming remote" in r.stdout and "drained" in r.stdout, r.stdout + r.stderr
    assert proc.poll() is None, "the hook must not stop the worker: SIGTERM does that afterwards"
    probe = d / "probe_no_wait.py"
    probe.write_text(PROBE_NO_WAIT)
    out = in_ns(NS_CLUSTER, sys.executable, str(probe), str(spec), "25", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    states = json.loads(out.stdout.strip().splitlines()[-1])
    assert states["on_remote"] in ("scheduled", "queued"), states
    assert states["on_local"] is None, states


def test_the_broker_refuses_the_remote_host_without_its_password(cluster_spec) -> None:
    """Listening beyond loopback keeps the passwords: Redis answers NOAUTH to a stranger."""
    probe = ("import redis; r = redis.Redis(host=%r, port=%d, socket_connect_timeout=5)\n"
             "try:\n    r.ping(); print('OPEN')\nexcept redis.AuthenticationError: print('NOAUTH')\n"
             "except redis.ResponseError as e: print('NOAUTH' if 'NOAUTH' in str(e) else e)\n")
    r = in_ns(NS_WORKER, sys.executable, "-c", probe % (CLUSTER_IP, BASE_PORT + 2), timeout=30)
    assert r.stdout.strip() == "NOAUTH", r.stdout + r.stderr


def test_join_refuses_a_loopback_cluster(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"cluster": {"name": "lo", "data_dir": str(tmp_path / "data")}})
    r = subprocess.run([sys.executable, "-m", "airscale.cli", "worker", "join", "-s", str(spec),
                        "--queue", "default", "--cluster-host", "192.0.2.10"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2
    assert "cluster.listen_host is 127.0.0.1" in r.stderr and "fix:" in r.stderr
