"""The backup archive: what a restore refuses (pure tables), and the file round trip."""

from __future__ import annotations

import os
import stat

import pytest

from airscale.backup import archive
from airscale.backup.archive import Member, build_manifest, compatibility_problem, manifest_problems

DUMP = Member("d" * 64, 100)
SPEC = Member("s" * 64, 10)
SECRETS = Member("k" * 64, 20)
GOOD = {"database.dump": DUMP, "spec.yaml": SPEC, "secrets.json": SECRETS}


def manifest(members=GOOD, **over) -> dict:
    m = build_manifest(cluster="c", created="2026-12-06T00:00:00+00:00", airscale_version="0.1",
                       airflow_version="3.1.0", alembic_revision="abc123", members=members)
    m.update(over)
    return m


@pytest.mark.parametrize("m, found, expected", [
    pytest.param(manifest(), GOOD, [], id="whole"),
    pytest.param(None, GOOD, ["not an airscale backup"], id="no-manifest"),
    pytest.param({"format": "something-else"}, GOOD, ["not an airscale backup"], id="foreign-manifest"),
    pytest.param(manifest(format_version=2), GOOD, ["newer airscale"], id="newer-format"),
    pytest.param(manifest(files=None), GOOD, ["lists no files"], id="no-file-list"),
    pytest.param(manifest(), {**GOOD, "database.dump": Member("d" * 64, 50)}, ["database.dump does not match"],
                 id="truncated-dump"),
    pytest.param(manifest(), {**GOOD, "secrets.json": Member("x" * 64, 20)}, ["secrets.json does not match"],
                 id="changed-secrets"),
    pytest.param(manifest(), {"spec.yaml": SPEC, "secrets.json": SECRETS},
                 ["database.dump is listed in the manifest but not in the archive"], id="dump-cut-off"),
    pytest.param(manifest({"spec.yaml": SPEC, "secrets.json": SECRETS}), {"spec.yaml": SPEC, "secrets.json": SECRETS},
                 ["database.dump is missing"], id="no-dump-at-all"),
    pytest.param(manifest(), {**GOOD, "extra": SPEC}, ["extra is in the archive but not in its manifest"],
                 id="smuggled-member"),
    pytest.param(manifest({**GOOD, "../etc/passwd": SPEC}), {**GOOD, "../etc/passwd": SPEC},
                 ["unsafe member name '../etc/passwd'"], id="path-traversal"),
    pytest.param(manifest({**GOOD, "/etc/passwd": SPEC}), {**GOOD, "/etc/passwd": SPEC},
                 ["unsafe member name '/etc/passwd'"], id="absolute-name"),
])
def test_manifest_problems(m, found, expected):
    problems = manifest_problems(m, found)
    assert len(problems) == len(expected), problems
    for p, want in zip(problems, expected):
        assert want in p


KNOWN = {"abc123", "old999"}.__contains__


@pytest.mark.parametrize("airflow, revision, installed, expected", [
    pytest.param("3.1.0", "abc123", "3.1.0", None, id="same-version"),
    pytest.param("3.0.6", "old999", "3.1.0", None, id="older-airflow-migrates-forward"),
    pytest.param("3.2.0", "abc123", "3.1.0", "newer than the installed 3.1.0", id="newer-airflow"),
    pytest.param("3.1.0", "fff000", "3.1.0", "does not know", id="unknown-revision"),
    pytest.param("3.1.0", None, "3.1.0", None, id="empty-database"),
    pytest.param("banana", "abc123", "3.1.0", "not a version", id="garbage-version"),
])
def test_compatibility(airflow, revision, installed, expected):
    m = manifest(airflow_version=airflow, alembic_revision=revision)
    problem = compatibility_problem(m, installed, KNOWN)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def _sources(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = {"database.dump": os.urandom(300_000), "spec.yaml": b"cluster: {name: c}\n",
             "secrets.json": b'{"k": "v"}', "files/airflow/airflow.cfg": b"[core]\n"}
    out = {}
    for name, data in files.items():
        p = src / name.replace("/", "_")
        p.write_bytes(data)
        out[name] = p
    return out


def test_round_trip_is_private_and_checks_out(tmp_path):
    sources = _sources(tmp_path)
    m = manifest({n: archive.sha256_of(p) for n, p in sources.items()})
    out = tmp_path / "b" / "x.tar"
    archive.write_archive(out, m, sources)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["x.tar"], "no temporary file is left beside it"
    dest = tmp_path / "extract"
    dest.mkdir()
    got, found = archive.read_archive(out, extract_to=dest)
    assert got == m and manifest_problems(got, found) == []
    assert (dest / "files/airflow/airflow.cfg").read_bytes() == b"[core]\n"
    assert stat.S_IMODE((dest / "secrets.json").stat().st_mode) == 0o600
    assert archive.read_member(out, "spec.yaml") == b"cluster: {name: c}\n"


@pytest.mark.parametrize("keep", [150_000, 2_000, 600])
def test_truncated_archive_is_refused(tmp_path, keep):
    sources = _sources(tmp_path)
    m = manifest({n: archive.sha256_of(p) for n, p in sources.items()})
    out = tmp_path / "x.tar"
    archive.write_archive(out, m, sources)
    with out.open("r+b") as f:
        f.truncate(keep)
    try:
        got, found = archive.read_archive(out)
    except archive.ArchiveError:
        return
    assert manifest_problems(got, found) != []


def test_not_a_tar(tmp_path):
    f = tmp_path / "x.tar"
    f.write_bytes(b"hello, not a tar" * 100)
    with pytest.raises(archive.ArchiveError):
        archive.read_archive(f)


def test_failed_write_leaves_no_file(tmp_path):
    sources = _sources(tmp_path)
    m = manifest({n: archive.sha256_of(p) for n, p in sources.items()})
    sources["spec.yaml"].unlink()  # disappears between the checksums and the archive
    out = tmp_path / "b" / "x.tar"
    with pytest.raises(FileNotFoundError):
        archive.write_archive(out, m, sources)
    assert list(out.parent.iterdir()) == []
