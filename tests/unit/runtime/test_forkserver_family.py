"""`forkserver.family`: a worker forked by the fork server counts for its client, whether the
records are read by `family` itself or once by the caller (`forked_map`, the bench's CPU
sampling)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from airscale.runtime import forkserver


@pytest.fixture
def client_and_worker(tmp_path):
    """Two sleeping processes, both children of this one, and the fork server's record that the
    second was forked for the first (as the client writes it)."""
    sock = tmp_path / "forkserver.sock"
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    client, worker = procs
    forkserver.pid_file(sock, client.pid).write_text(str(worker.pid))
    (tmp_path / "forked-x.pid").write_text("1")  # not a client pid
    (tmp_path / "forked-5.pid").write_text("junk")  # not a worker pid
    yield sock, client.pid, worker.pid
    for p in procs:
        p.kill()
        p.wait()


def pids(procs) -> set[int]:
    return {p.pid for p in procs}


def test_forked_map_reads_the_records(client_and_worker, tmp_path):
    sock, client, worker = client_and_worker
    assert forkserver.forked_map(sock) == {worker: client}
    assert forkserver.forked_map(None) == {}
    assert forkserver.forked_map(tmp_path / "gone" / "forkserver.sock") == {}


def test_family_counts_a_forked_worker_for_its_client(client_and_worker):
    sock, client, worker = client_and_worker
    forked = forkserver.forked_map(sock)
    for kwargs in ({"socket_path": sock}, {"forked": forked}):
        assert pids(forkserver.family(client, **kwargs)) == {client, worker}
        # The worker's parent (here this process, in a cluster the fork server) does not count it.
        mine = pids(forkserver.family(os.getpid(), **kwargs))
        assert client in mine and worker not in mine
    # Without records a worker is only its own process.
    assert pids(forkserver.family(client)) == {client}
    assert pids(forkserver.family(client, sock, forked={})) == {client}


def test_family_of_a_gone_process_is_empty(client_and_worker):
    sock, _, _ = client_and_worker
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert forkserver.family(p.pid, forked=forkserver.forked_map(sock)) == []
