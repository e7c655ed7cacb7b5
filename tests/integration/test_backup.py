"""Backup and restore against real processes (the shared `dev` cluster of conftest.py).

- the scheduled backups of the dev cluster's spec run from their component and keep 1;
- a round trip: a DAG run with its task instances and XComs, a connection and a variable,
  `airscale backup`, `airscale restore` into a fresh data folder under a spec of its own (other
  ports: the original keeps running), the rows and the admin login identical, a DAG triggered
  on the restored cluster succeeds; then the restored cluster goes `down --purge`;
- a restore that fails midway (a dump PostgreSQL cannot load, in an archive whose checksums
  hold) leaves the target folder as it was, stops its PostgreSQL and says how to retry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from airscale.backup import archive
from airscale.backup.take import archive_pattern
from airscale.runtime.airflow_config import api_url
from airscale.runtime.secrets import Secrets
from airscale.workload.client import AirflowClient
from tests.conftest import airscale, reachable_tmpdir, write_spec
from tests.integration.conftest import FAILED_RESTORE_PORT, RESTORED_PORT, cluster_of

pytestmark = [pytest.mark.integration]

# Per table: the rows of this test's run (or names), in a stable order. Whole rows: a restore
# that drops a column's value or re-encrypts a secret differs here.
QUERIES = {
    "dag_run": "SELECT * FROM dag_run WHERE dag_id = %s AND run_id = %s",
    "task_instance": "SELECT * FROM task_instance WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
    "xcom": "SELECT * FROM xcom WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index, key",
}


def _rows(cluster, dag_id: str, run_id: str, conn_id: str, key: str) -> dict[str, list[tuple]]:
    out = {t: cluster.query(q, dag_id, run_id) for t, q in QUERIES.items()}
    out["connection"] = cluster.query("SELECT * FROM connection WHERE conn_id = %s", conn_id)
    out["variable"] = cluster.query("SELECT * FROM variable WHERE key = %s", key)
    return out


def _client(cluster, password: str) -> AirflowClient:
    return AirflowClient(api_url(cluster.spec), "admin", password, timeout=30)


@pytest.mark.timeout(300)
def test_scheduled_backups_run_and_keep_their_number(healthy_dev):
    from airscale.observe.exporter import BackupCollector

    cluster = healthy_dev.cluster
    folder = cluster.spec.backup_path
    pattern = archive_pattern(cluster.spec.cluster.name)
    deadline = time.monotonic() + 240
    # The first comes 18 s after up, the next 18 s later: wait for one that pruned (keep 1).
    while True:
        state = json.loads(cluster.layout.backup_state.read_text()) if cluster.layout.backup_state.exists() else {}
        archives = sorted(p.name for p in folder.glob("*.tar") if pattern.match(p.name)) if folder.exists() else []
        if state.get("last_ok_at") and "deleted" in state.get("detail", ""):
            break
        assert time.monotonic() < deadline, f"no pruned scheduled backup yet: {state}, {archives}"
        time.sleep(3)
    assert state["last_ok"] is True, state
    assert 1 <= len(archives) <= 2, archives
    assert Path(state["archive"]).name in archives
    assert oct(os.stat(folder / archives[-1]).st_mode & 0o777) == "0o600"
    # What the exporter makes of it: the end of the last good backup, seconds ago.
    (metric,) = BackupCollector(str(cluster.layout.backup_state)).collect()
    age = time.time() - metric.samples[0].value
    assert 0 <= age < 200, age


@pytest.mark.timeout(900)
def test_backup_and_restore_round_trip(healthy_dev):
    original = healthy_dev.cluster
    password = original.secrets().admin_password
    client = _client(original, password)
    client.wait_for_dag("it_layers")
    client.unpause("it_layers")
    run_id = client.trigger("it_layers")
    assert client.wait_for_run("it_layers", run_id, timeout=300).state == "success"
    tag = uuid.uuid4().hex[:8]
    conn_id, key, value = f"backup_probe_{tag}", f"backup_probe_{tag}", f"secret-{uuid.uuid4().hex}"
    client._call("POST", "/connections", json={"connection_id": conn_id, "conn_type": "postgres",
                                               "host": "db.example", "login": "u", "password": "p:ss@1", "port": 5432})
    client._call("POST", "/variables", json={"key": key, "value": value})

    root = reachable_tmpdir("airscale-it-restore-")
    out = root / "backups" / "dev.tar"
    restored_spec = None
    ok = False
    try:
        proc = airscale("backup", "-s", str(healthy_dev.spec_path), "--out", str(out), "--json", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["path"] == str(out) and oct(out.stat().st_mode & 0o777) == "0o600"
        assert [p.name for p in out.parent.iterdir()] == ["dev.tar"], "no partial file beside the archive"
        assert result["manifest"]["alembic_revision"] == original.query("SELECT version_num FROM alembic_version")[0][0]
        assert value not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr
        before = _rows(original, "it_layers", run_id, conn_id, key)
        assert len(before["task_instance"]) == 24 and before["xcom"] and before["connection"] and before["variable"]

        # The restored cluster: the same DAGs, its own ports and data folder, the original still up.
        data = yaml.safe_load(healthy_dev.spec_path.read_text())
        data["cluster"].update(base_port=RESTORED_PORT, data_dir=str(root / "data"))
        data.pop("tuning", None)
        data.pop("backup", None)
        restored_spec = write_spec(root, data, "restored.yaml")
        (root / "data").mkdir()  # empty: a restore may fill it
        proc = airscale("restore", str(out), "-s", str(restored_spec), timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        restored = cluster_of(restored_spec)
        assert oct(restored.layout.secrets_file.stat().st_mode & 0o777) == "0o600"
        assert restored.cluster_id() != original.cluster_id()
        after = _rows(restored, "it_layers", run_id, conn_id, key)
        for table in before:
            assert after[table] == before[table], table

        # The admin login of the original works; the variable decrypts (the Fernet key came back).
        rclient = _client(restored, password)
        assert rclient._call("GET", f"/variables/{key}").json()["value"] == value
        rclient.wait_for_dag("dbcare_probe")
        rclient.unpause("dbcare_probe")
        new_run = rclient.trigger("dbcare_probe")
        assert rclient.wait_for_run("dbcare_probe", new_run, timeout=300).state == "success"
        # A second restore into the now running folder is refused, and changes nothing.
        proc = airscale("restore", str(out), "-s", str(restored_spec), timeout=120)
        assert proc.returncode == 2 and "is not empty" in proc.stderr, proc.stderr
        ok = True
    finally:
        if restored_spec is not None and not ok:  # the evidence, before the purge deletes it
            logs = root / "data" / "logs"
            for name in ("api-server", "liveness", "supervisord", "restart-listener", "scheduler-1"):
                f = logs / f"{name}.log"
                if f.exists():
                    print(f"--- {name} (last lines)\n" + "\n".join(f.read_text(errors="replace").splitlines()[-30:]))
        if restored_spec is not None:
            down = airscale("down", "--purge", "-s", str(restored_spec), timeout=400)
            assert down.returncode == 0, down.stdout + down.stderr
        shutil.rmtree(root, ignore_errors=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(300)
def test_restore_failing_midway_leaves_the_target_untouched():
    """An archive whose checksums hold but whose dump PostgreSQL cannot load: the restore gets
    as far as pg_restore, then fails."""
    from importlib.metadata import version

    root = reachable_tmpdir("airscale-it-badrestore-")
    try:
        src = root / "src"
        src.mkdir()
        (src / "dump").write_bytes(b"PGDMP" + os.urandom(4096))
        (src / "secrets.json").write_text(json.dumps(asdict(Secrets.generate())))
        (src / "spec.yaml").write_text("cluster: {name: bad}\n")
        sources = {archive.DUMP: src / "dump", archive.SECRETS: src / "secrets.json", archive.SPEC: src / "spec.yaml"}
        manifest = archive.build_manifest(
            cluster="bad", created=datetime.now(timezone.utc).isoformat(), airscale_version=version("airscale"),
            airflow_version=version("apache-airflow"), alembic_revision=None,
            members={n: archive.sha256_of(p) for n, p in sources.items()})
        bad = root / "bad.tar"
        archive.write_archive(bad, manifest, sources)
        target = root / "target"
        target.mkdir()
        spec = write_spec(root, {"cluster": {"name": "bad", "base_port": FAILED_RESTORE_PORT, "profile": "dev",
                                             "data_dir": str(target)}, "dags_folder": str(root / "dags")})
        (root / "dags").mkdir()
        proc = airscale("restore", str(bad), "-s", str(spec), timeout=240)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "restore failed: pg_restore failed" in proc.stderr, proc.stderr
        assert f"nothing was written to {target}" in proc.stderr and "run the same `airscale restore` again" in proc.stderr
        assert target.is_dir() and list(target.iterdir()) == []
        assert sorted(p.name for p in root.iterdir()) == ["airscale.yaml", "bad.tar", "dags", "src", "target"]
        assert _port_free(cluster_of(spec).spec.ports.postgres), "the restore's PostgreSQL was left running"
        # A truncated archive is refused before anything is written.
        truncated = root / "truncated.tar"
        truncated.write_bytes(bad.read_bytes()[:3000])
        proc = airscale("restore", str(truncated), "-s", str(spec), timeout=120)
        assert proc.returncode == 2 and "truncated" in proc.stderr, proc.stderr
        assert list(target.iterdir()) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
