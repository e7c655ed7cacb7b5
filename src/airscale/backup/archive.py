"""The backup archive: one uncompressed tar (the dump inside is compressed already) holding

- `manifest.json` first: format, versions (airscale, Airflow, the alembic revision of the
  database), creation time, cluster name, and the SHA-256 and size of every other member;
- `database.dump`: `pg_dump -Fc` of the metadata database;
- `spec.yaml`, `secrets.json`, and under `files/` the generated configuration and the admin
  password file, by their paths in the data folder.

What a restore must refuse is decided here from data (`manifest_problems`,
`compatibility_problem`), so the tables in the unit tests cover it; `write_archive` and
`read_archive` do the I/O. The archive is written to a temporary name next to its final one
and renamed at the end: a stop or a full disk never leaves half an archive under the name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from packaging.version import InvalidVersion, Version

FORMAT = "airscale-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
SPEC = "spec.yaml"
SECRETS = "secrets.json"
FILES = "files/"
REQUIRED = (DUMP, SPEC, SECRETS)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    sha256: str
    size: int


def sha256_of(path: Path) -> Member:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return Member(h.hexdigest(), size)


def build_manifest(*, cluster: str, created: str, airscale_version: str, airflow_version: str,
                   alembic_revision: str | None, members: dict[str, Member]) -> dict:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "cluster": cluster, "created": created,
        "airscale_version": airscale_version, "airflow_version": airflow_version,
        "alembic_revision": alembic_revision,
        "files": {name: {"sha256": m.sha256, "size": m.size} for name, m in sorted(members.items())},
    }


def unsafe_name(name: str) -> bool:
    """A member name that could land outside the folder it is extracted into."""
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts or name in ("", ".") or "\\" in name


def manifest_problems(manifest: object, found: dict[str, Member]) -> list[str]:
    """Why an archive whose manifest is `manifest` and whose other members are `found` (name ->
    checksum as read) is not a whole airscale backup (pure); [] when it is."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return ["it is not an airscale backup (no airscale manifest)"]
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        return [f"it was written by a newer airscale (archive format {version!r}, this one reads "
                f"{FORMAT_VERSION})"]
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return ["its manifest lists no files"]
    problems = [f"unsafe member name {n!r}" for n in sorted({*listed, *found}) if unsafe_name(n)]
    problems += [f"{n} is missing" for n in REQUIRED if n not in listed]
    for name, want in sorted(listed.items()):
        got = found.get(name)
        if got is None:
            problems.append(f"{name} is listed in the manifest but not in the archive (truncated?)")
        elif not isinstance(want, dict) or (got.sha256, got.size) != (want.get("sha256"), want.get("size")):
            problems.append(f"{name} does not match its checksum (damaged or truncated)")
    problems += [f"{n} is in the archive but not in its manifest" for n in sorted(set(found) - set(listed))]
    return problems


def compatibility_problem(manifest: dict, installed_airflow: str,
                          known_revision: Callable[[str], bool]) -> str | None:
    """Why this installation cannot restore the archive's database (pure), or None.

    An older archive is fine: `up` runs `airflow db migrate` after the restore, which brings the
    schema forward. A newer one is not: Airflow cannot migrate down a schema it does not know."""
    theirs = str(manifest.get("airflow_version") or "")
    try:
        newer = Version(theirs) > Version(installed_airflow)
    except InvalidVersion:
        return f"its Airflow version {theirs!r} is not a version"
    if newer:
        return (f"it was taken with Airflow {theirs}, newer than the installed {installed_airflow}; "
                "Airflow cannot migrate a database down")
    rev = manifest.get("alembic_revision")
    if rev and not known_revision(rev):
        return (f"its database is at alembic revision {rev}, which the installed Airflow "
                f"{installed_airflow} does not know (a newer or patched Airflow wrote it)")
    return None


# -- I/O -------------------------------------------------------------------------------------------
def write_archive(out: Path, manifest: dict, sources: dict[str, Path]) -> None:
    """Write the tar at `out` (mode 0600), atomically: a temporary file beside it, renamed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                data = json.dumps(manifest, indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
                for name in sorted(sources):
                    info = tar.gettarinfo(str(sources[name]), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                    with sources[name].open("rb") as src:
                        tar.addfile(info, src)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ArchiveError(Exception):
    """The file cannot be read as a tar at all (not a tar, truncated in a header)."""


def read_archive(path: Path, extract_to: Path | None = None) -> tuple[object, dict[str, Member]]:
    """(manifest, checksums of the other members) of the tar at `path`; with `extract_to`, also
    writes each member of a safe name there (mode 0600). Raises ArchiveError when it is no tar."""
    manifest: object = None
    found: dict[str, Member] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    found[info.name] = Member("not a file", -1)
                    continue
                src = tar.extractfile(info)
                assert src is not None
                if info.name == MANIFEST:
                    try:
                        manifest = json.loads(src.read(1 << 20))
                    except ValueError:
                        manifest = None
                    continue
                dest = None
                if extract_to is not None and not unsafe_name(info.name):
                    dest = extract_to / info.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                found[info.name] = _copy(src, dest)
    except (tarfile.TarError, EOFError, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise  # a real I/O error (permission, disk full), not a damaged archive
        raise ArchiveError(str(e) or type(e).__name__) from None
    return manifest, found


def _copy(src, dest: Path | None) -> Member:
    h = hashlib.sha256()
    size = 0
    out = None
    if dest is not None:
        out = os.fdopen(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    try:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    finally:
        if out is not None:
            out.close()
    return Member(h.hexdigest(), size)


def config_members(root: Path, relpaths: Iterable[str]) -> dict[str, Path]:
    """`files/<relpath>` -> path, for each of `relpaths` under the data folder that exists."""
    return {FILES + r: root / r for r in relpaths if (root / r).is_file()}


def read_member(path: Path, name: str, limit: int = 1 << 20) -> bytes | None:
    """One small member's bytes (the spec), or None when the archive has none of that name."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            try:
                info = tar.getmember(name)
            except KeyError:
                return None
            src = tar.extractfile(info)
            return src.read(limit) if src is not None else None
    except (tarfile.TarError, EOFError) as e:
        raise ArchiveError(str(e) or type(e).__name__) from None
