"""The bench's CPU accounting reads the fork server's records once per sample, not per PID."""

from __future__ import annotations

import os
from types import SimpleNamespace

from airscale.bench import driver
from airscale.runtime import forkserver


def test_cpu_sample_reads_the_fork_server_records_once(monkeypatch, tmp_path):
    kinds = {"scheduler-1": "scheduler", "worker-default-1": "worker", "worker-default-2": "worker"}
    cluster = SimpleNamespace(
        supervisor=SimpleNamespace(infos=lambda: {n: {"pid": os.getpid()} for n in kinds}),
        components=lambda: [SimpleNamespace(name=n, kind=k) for n, k in kinds.items()],
        layout=SimpleNamespace(forkserver_socket=tmp_path / "forkserver.sock"),
    )
    target = driver.Target.__new__(driver.Target)
    target.cluster = cluster
    reads = []
    real = forkserver.forked_map
    monkeypatch.setattr(forkserver, "forked_map", lambda sock: reads.append(sock) or real(sock))
    cpu = target.cpu()
    assert reads == [cluster.layout.forkserver_socket]
    assert set(cpu) == {"scheduler", "worker"} and all(v > 0 for v in cpu.values())
