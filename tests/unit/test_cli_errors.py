"""Bad input through the real CLI: exit code 2, a short message naming the problem and the fix,
no traceback, and nothing started."""

import socket

import pytest

from tests.conftest import airscale, write_spec


def assert_clean_error(proc, *expected: str):
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text
    for e in expected:
        assert e in text, text
    assert "fix:" in text or "unknown field" in text or "greater than" in text, text


@pytest.mark.parametrize(
    "content, expected",
    [
        pytest.param("cluster: [\n", ["invalid YAML at line"], id="invalid-yaml"),
        pytest.param("cluster:\n  nmae: x\n", ["cluster.nmae", "unknown field"], id="unknown-field"),
        pytest.param("queues:\n  default: {min_workers: 5, max_workers: 2}\n",
                     ["queues.default", "min_workers (5) is greater than max_workers (2)"], id="min-above-max"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "up"])
def test_invalid_spec(spec_dir, content, expected, command):
    path = spec_dir / "airscale.yaml"
    path.write_text(content)
    args = ["validate", str(path)] if command == "validate" else ["up", "-s", str(path)]
    assert_clean_error(airscale(*args), *expected)


def base(spec_dir, **extra):
    data = {"cluster": {"name": "errs", "data_dir": str(spec_dir / "data"), "base_port": 29950}}
    data.update(extra)
    return data


def test_port_in_use(spec_dir):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 29951))  # the embedded PostgreSQL's port
        s.listen()
        proc = airscale("up", "-s", str(write_spec(spec_dir, base(spec_dir))))
    assert_clean_error(proc, "port 29951", "postgres", "already in use", "cluster.base_port")
    assert not (spec_dir / "data").exists(), "nothing may be created when up refuses"


def test_missing_postgres_binaries(spec_dir):
    spec = base(spec_dir, database={"postgres_bin_dir": "/nonexistent/pg/bin"})
    proc = airscale("up", "-s", str(write_spec(spec_dir, spec)))
    assert_clean_error(proc, "PostgreSQL server binaries", "/nonexistent/pg/bin", "database.postgres_bin_dir")


@pytest.mark.parametrize(
    "make, expected",
    [
        pytest.param(lambda d: d / "missing", "does not exist", id="missing"),
        pytest.param(lambda d: (d / "file.py", (d / "file.py").write_text(""))[0], "is not a folder", id="a-file"),
    ],
)
def test_unusable_dags_folder(spec_dir, make, expected):
    dags = make(spec_dir)
    proc = airscale("up", "-s", str(write_spec(spec_dir, base(spec_dir, dags_folder=str(dags)))))
    assert_clean_error(proc, f"dags_folder {dags}", expected)


def test_unreadable_dags_folder(spec_dir):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every folder; covered for normal users")
    dags = spec_dir / "locked"
    dags.mkdir(mode=0)
    proc = airscale("up", "-s", str(write_spec(spec_dir, base(spec_dir, dags_folder=str(dags)))))
    assert_clean_error(proc, "is not readable")


def test_missing_spec_file(spec_dir):
    assert_clean_error(airscale("status", "-s", str(spec_dir / "nope.yaml")), "spec file not found", "airscale init")


def test_status_of_a_cluster_that_is_not_up(spec_dir):
    proc = airscale("status", "-s", str(write_spec(spec_dir, base(spec_dir))))
    assert_clean_error(proc, "is not running", "airscale up")


def test_exporter_without_database_url(spec_dir, monkeypatch):
    monkeypatch.delenv("AIRSCALE_DATABASE_URL", raising=False)
    proc = airscale("exporter", "-s", str(write_spec(spec_dir, base(spec_dir))))
    assert_clean_error(proc, "AIRSCALE_DATABASE_URL is not set")


def test_pgbouncer_with_an_external_database(spec_dir):
    data = {**base(spec_dir), "database": {"url": "postgresql://a:b@db:5432/airflow", "pgbouncer": True}}
    proc = airscale("validate", str(write_spec(spec_dir, data)))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in text, text
    assert "database" in text and "embedded PostgreSQL only" in text, text


def test_init_writes_a_valid_spec_and_refuses_to_overwrite(spec_dir):
    path = spec_dir / "new.yaml"
    assert airscale("init", str(path), "--name", "fresh").returncode == 0
    assert airscale("validate", str(path)).returncode == 0
    assert_clean_error(airscale("init", str(path)), "already exists", "--force")


def test_every_command_has_help_with_an_example():
    import typer.main

    from airscale.cli import app

    def leaves(group, prefix):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
                assert cmd.help, f"`{prefix} {name} --help` says nothing"
                yield from leaves(cmd, f"{prefix} {name}")
            else:
                yield f"{prefix} {name}", cmd

    found = list(leaves(typer.main.get_group(app), "airscale"))
    assert len(found) >= 10
    for path, cmd in found:
        assert "Example:" in (cmd.help or ""), f"`{path} --help` has no example"


def test_backup_of_a_cluster_that_is_not_there(spec_dir):
    proc = airscale("backup", "-s", str(write_spec(spec_dir, base(spec_dir))))
    assert_clean_error(proc, "no cluster at", "airscale up")
    assert not (spec_dir / "data").exists()


@pytest.mark.parametrize("content, expected", [
    pytest.param(None, ["no such archive"], id="missing"),
    pytest.param(b"not a tar at all" * 64, ["not a readable airscale backup"], id="not-a-tar"),
])
def test_restore_refuses_a_bad_archive(spec_dir, content, expected):
    archive = spec_dir / "backup.tar"
    if content is not None:
        archive.write_bytes(content)
    proc = airscale("restore", str(archive), "-s", str(write_spec(spec_dir, base(spec_dir))))
    assert_clean_error(proc, *expected)
    assert not (spec_dir / "data").exists(), "nothing may be created when restore refuses"


def test_restore_refuses_a_foreign_tar(spec_dir):
    import tarfile

    (spec_dir / "notes.txt").write_text("hello")
    with tarfile.open(spec_dir / "backup.tar", "w") as tar:
        tar.add(spec_dir / "notes.txt", arcname="notes.txt")
    proc = airscale("restore", str(spec_dir / "backup.tar"), "-s", str(write_spec(spec_dir, base(spec_dir))))
    assert_clean_error(proc, "not an airscale backup")


def _archive(folder, spec_text: str):
    """A whole archive (checksums hold) whose dump is never loaded: the tests stop before."""
    import json
    from dataclasses import asdict
    from importlib.metadata import version

    from airscale.backup import archive
    from airscale.runtime.secrets import Secrets

    src = folder / "src"
    src.mkdir()
    (src / "dump").write_bytes(b"PGDMP")
    (src / "secrets.json").write_text(json.dumps(asdict(Secrets.generate())))
    (src / "spec.yaml").write_text(spec_text)
    sources = {archive.DUMP: src / "dump", archive.SECRETS: src / "secrets.json", archive.SPEC: src / "spec.yaml"}
    m = archive.build_manifest(cluster="errs", created="2026-12-06T00:00:00+00:00", airscale_version="0",
                               airflow_version=version("apache-airflow"), alembic_revision=None,
                               members={n: archive.sha256_of(p) for n, p in sources.items()})
    out = folder / "backup.tar"
    archive.write_archive(out, m, sources)
    return out


def test_restore_refuses_a_folder_that_is_not_empty(spec_dir):
    """Without a spec file the archive's is used, with --data-dir; refused, it is not written."""
    target = spec_dir / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("someone's")
    tar = _archive(spec_dir, "cluster: {name: errs, base_port: 29950}\n")
    spec = spec_dir / "restored.yaml"
    proc = airscale("restore", str(tar), "-s", str(spec), "--data-dir", str(target))
    assert_clean_error(proc, "is not empty (notes.txt)", "nothing was changed")
    assert not spec.exists()
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_restore_refuses_an_archive_of_a_newer_airflow(spec_dir):
    import json
    import tarfile

    tar = _archive(spec_dir, "cluster: {name: errs}\n")
    # Rewrite the manifest with a newer Airflow: checksums of the other members still hold.
    with tarfile.open(tar) as t:
        members = {m.name: t.extractfile(m).read() for m in t.getmembers()}
    manifest = json.loads(members.pop("manifest.json"))
    manifest["airflow_version"] = "99.0.0"
    newer = spec_dir / "newer.tar"
    import io

    with tarfile.open(newer, "w") as t:
        for name, data in [("manifest.json", json.dumps(manifest).encode()), *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    proc = airscale("restore", str(newer), "-s", str(write_spec(spec_dir, base(spec_dir))))
    assert_clean_error(proc, "Airflow 99.0.0", "cannot migrate a database down")
    assert not (spec_dir / "data").exists()
