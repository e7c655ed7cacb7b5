"""`airscale backup` in the `ha` profile dumps from the streaming standby (the shared `ha`
cluster of conftest.py; the choice itself is tested in tests/unit/backup/test_dump_source.py).

The archive must hold the same data as the primary: its manifest's revision is the primary's,
and `pg_restore --list` of its dump names the Airflow tables."""

from __future__ import annotations

import json
import subprocess
import tarfile
import time

import pytest

from airscale.backup import archive
from airscale.backup.take import client_bin, probe_nodes
from airscale.ha import database
from tests.conftest import airscale

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(database.missing_binaries()),
                       reason="needs the Debian packages etcd-server, patroni and haproxy"),
]


@pytest.mark.timeout(300)
def test_backup_dumps_from_the_fresh_standby(healthy_ha, tmp_path):
    cluster = healthy_ha.cluster
    # Patroni 3.0 calls a streaming standby "running": PostgreSQL's own WAL receiver says
    # whether it streams (what the backup reads too). Right after `up` it may still connect.
    deadline = time.monotonic() + 120
    while True:
        nodes = probe_nodes(cluster.spec, cluster.secrets())
        standby = next((n for n in nodes if n.standby and n.streaming), None)
        if standby is not None:
            break
        assert time.monotonic() < deadline, f"no standby streams: {nodes}"
        time.sleep(2)
    port = standby.port
    members = database.cluster_members(cluster.spec)
    assert {m["name"]: m.get("role") for m in members}.get(f"pg-{port - cluster.spec.ports.pg_node(1) + 1}") \
        == "replica", members
    out = tmp_path / "ha.tar"
    proc = airscale("backup", "-s", str(healthy_ha.spec_path), "--out", str(out), "--json", timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["manifest"]["source"] == f"standby on port {port}", result["manifest"]
    assert f"dumping from the standby on port {port} (streaming" in proc.stderr, proc.stderr
    assert result["manifest"]["alembic_revision"] == cluster.query("SELECT version_num FROM alembic_version")[0][0]
    with tarfile.open(out) as tar:
        tar.extract(archive.DUMP, tmp_path, filter="data")
    listing = subprocess.run([client_bin(cluster.spec, "pg_restore"), "--list", str(tmp_path / archive.DUMP)],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE public dag_run" in listing and "TABLE DATA public task_instance" in listing
