"""The worker fork server (airscale.runtime.forkserver) with real processes: a tiny target
module stands in for the Celery worker. The cluster tests run real workers through it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from airscale.runtime import forkserver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TARGET = '''
import os, signal, sys, time
print("started", os.getpid(), os.getppid(), os.getcwd(), os.environ.get("FS_MARK"), *sys.argv[1:], flush=True)
mode = sys.argv[1]
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "raise":
    raise RuntimeError("boom")
if mode == "sleep":
    signal.signal(signal.SIGTERM, lambda *_: (print("warm shutdown", flush=True), sys.exit(7)))
    child = os.fork()  # a pool process
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        time.sleep(120)
        os._exit(0)
    time.sleep(120)
'''


def _wait(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def env():
    d = Path(tempfile.mkdtemp(prefix="airscale-fork-", dir="/tmp"))
    (d / "fs_target.py").write_text(TARGET)
    e = {**os.environ, "PYTHONPATH": str(d)}
    sock = d / "s" / "fork.sock"
    procs: list[subprocess.Popen] = []

    def server(extra_env: dict | None = None) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "airscale.runtime.forkserver", "serve", "--socket", str(sock),
                              "--preload", "json"], env={**e, **(extra_env or {})},
                             stdout=open(d / "server.log", "a"), stderr=subprocess.STDOUT)
        procs.append(p)
        _wait(sock.exists, 20, "the server's socket")
        return p

    def client(*args: str, mark: str = "x", extra_env: dict | None = None) -> subprocess.Popen:
        out = open(d / f"client-{len(procs)}.log", "w")
        p = subprocess.Popen([sys.executable, "-m", "airscale.runtime.forkserver", "run", "--socket", str(sock),
                              "--", "-m", "fs_target", *args], env={**e, "FS_MARK": mark, **(extra_env or {})}, cwd=d,
                             stdout=out, stderr=subprocess.STDOUT)
        p.log = Path(out.name)
        procs.append(p)
        return p

    try:
        yield d, sock, server, client
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        subprocess.run(["rm", "-rf", str(d)], check=False)


def _started(p) -> list[str]:
    line = _wait(lambda: next((x for x in p.log.read_text().splitlines() if x.startswith("started")), None),
                 20, "the target's first line")
    return line.split()


def test_forked_worker_gets_argv_env_cwd_output_and_exit_code(env) -> None:
    d, sock, server, client = env
    srv = server()
    c = client("exit", "5", mark="hello")
    assert c.wait(20) == 5
    fields = _started(c)
    # Forked by the server, not a child of the client; the client's env, cwd and stdout.
    assert int(fields[2]) == srv.pid
    assert fields[3:] == [str(d), "hello", "exit", "5"]
    r = client("raise")
    assert r.wait(20) == 1
    assert "RuntimeError: boom" in r.log.read_text()
    assert not list(sock.parent.glob("forked-*.pid"))  # records go with their clients


def test_stop_signal_is_forwarded_and_family_follows_the_worker(env) -> None:
    _, sock, server, client = env
    srv = server()
    c = client("sleep")
    worker = int(_started(c)[1])
    fam = _wait(lambda: len(forkserver.family(c.pid, sock)) >= 3 and forkserver.family(c.pid, sock), 10,
                "the worker and its pool process")
    assert {c.pid, worker} <= {p.pid for p in fam}
    # The server's own family does not count its workers (they count for their clients).
    srv_family = {p.pid for p in forkserver.family(srv.pid, sock)}
    assert worker not in srv_family
    c.send_signal(signal.SIGTERM)
    assert c.wait(20) == 7
    assert "warm shutdown" in c.log.read_text()


def test_a_killed_client_takes_its_worker_with_it(env) -> None:
    _, sock, server, client = env
    server()
    c = client("sleep")
    worker = int(_started(c)[1])
    fam = _wait(lambda: len(forkserver.family(c.pid, sock)) >= 3 and forkserver.family(c.pid, sock), 10, "family")
    c.kill()  # as supervisord's SIGKILL of the group after stopwaitsecs
    c.wait(10)
    gone, alive = psutil.wait_procs([p for p in fam if p.pid != c.pid], timeout=10)
    assert not alive, f"still running after their client died: {alive}"
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE


def test_without_a_server_the_client_starts_cold(env) -> None:
    _, _, _, client = env
    c = client("exit", "4")
    assert c.wait(30) == 4
    fields = _started(c)
    assert int(fields[1]) == c.pid  # exec'd in place
    assert "starting cold" in c.log.read_text()


def test_a_changed_environment_or_config_is_started_cold(env) -> None:
    d, sock, server, client = env
    cfg = d / "airflow.cfg"
    cfg.write_text("[core]\n")
    srv = server({"AIRFLOW_CONFIG": str(cfg)})
    c = client("exit", "0")  # no AIRFLOW_CONFIG in the client's env: differs
    assert c.wait(30) == 0
    assert int(_started(c)[1]) == c.pid and "AIRFLOW_CONFIG" in c.log.read_text()
    assert srv.poll() is None
    # `up` rewrites airflow.cfg with the same content: still forked.
    cfg.write_text("[core]\n")
    c = client("exit", "0", extra_env={"AIRFLOW_CONFIG": str(cfg)})
    assert c.wait(30) == 0
    assert int(_started(c)[2]) == srv.pid
    # A rewritten airflow.cfg: started cold, and the server exits for a restart with the new one.
    cfg.write_text("[core]\nparallelism = 64\n")
    c = client("exit", "0", extra_env={"AIRFLOW_CONFIG": str(cfg)})
    assert c.wait(30) == 0
    assert int(_started(c)[1]) == c.pid and "airflow.cfg changed" in c.log.read_text()
    assert srv.wait(10) == 3


@pytest.mark.parametrize(
    "req, own, then, now, refused",
    [
        ({"AIRFLOW_HOME": "/a", "X": "1"}, {"AIRFLOW_HOME": "/a", "X": "2"}, "d1", "d1", None),
        ({"AIRFLOW_HOME": "/a"}, {"AIRFLOW_HOME": "/b"}, "d1", "d1", "AIRFLOW_HOME"),
        ({"AIRFLOW__CORE__X": "1"}, {}, "d1", "d1", "AIRFLOW__CORE__X"),
        ({"PYTHONPATH": "/p"}, {"PYTHONPATH": "/q"}, None, None, "PYTHONPATH"),
        ({}, {}, "d1", "d2", "airflow.cfg changed"),
    ],
)
def test_refusal(req, own, then, now, refused) -> None:
    why = forkserver.refusal(req, own, then, now)
    assert (why is None) if refused is None else (refused in why)


@pytest.mark.parametrize("code, status", [(None, 0), (0, 0), (3, 3), (256 + 2, 2), ("message", 1)])
def test_exit_code(code, status) -> None:
    assert forkserver.exit_code(code) == status
