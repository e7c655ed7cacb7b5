"""The data folder's marker: proof that a folder is this cluster's before `up` takes it over
and before `down --purge` deletes it.

`up` writes MARKER (the cluster's name and a generated id, JSON) into the data folder it
creates; `down --purge` deletes only a folder whose marker names the same cluster. So a
data_dir that points at someone's project, at another cluster's folder or (through a typo or
a symlink) at a folder full of other data is refused, never chmodded or deleted.

Clusters made before the marker existed are recognised by what `up` always wrote into them
(secrets.json and state/cluster-id): `up` marks them instead of refusing them.

The decisions (`claim_problem`, `purge_allowed`) are pure; `read_marker` and `claim` do the I/O.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from airscale.errors import AirscaleError
from airscale.runtime.layout import Layout
from airscale.spec.datadir import FIX, data_dir_problem

MARKER = ".airscale-cluster"


def marker_path(root: Path) -> Path:
    return root / MARKER


def purge_allowed(path: Path, marker: dict | None, cluster_name: str,
                  spec_dir: Path | None = None, home: Path | None = None) -> tuple[bool, str]:
    """Whether `down --purge` may delete `path`, whose marker is `marker` (None: no marker), and why."""
    problem = data_dir_problem(path, spec_dir, home)
    if problem:
        return False, problem
    if marker is None:
        return False, f"{path} has no {MARKER} file, so airscale did not make it (or it predates the marker)"
    owner = marker.get("cluster")
    if owner != cluster_name:
        return False, f"{path} belongs to cluster {owner!r}, not {cluster_name!r}"
    return True, f"{path} is cluster {cluster_name!r}'s data folder"


def claim_problem(path: Path, entries: list[str], marker: dict | None, cluster_name: str) -> str | None:
    """Why `up` must not use the existing folder `path` (its `entries`: names of what it
    holds), or None. A folder that does not exist yet is claimed freely."""
    if marker is not None:
        owner = marker.get("cluster")
        return None if owner == cluster_name else f"{path} belongs to cluster {owner!r} ({MARKER})"
    if not entries or is_premarker_cluster(entries):
        return None
    return (f"{path} is not empty and was not made by airscale (no {MARKER} file); "
            "airscale makes it mode 0755 and `down --purge` deletes it whole")


def is_premarker_cluster(entries: list[str]) -> bool:
    """A data folder made by `up` before the marker: it has the secrets and the cluster id."""
    return "secrets.json" in entries and "state/cluster-id" in entries


# -- I/O ------------------------------------------------------------------------------------------
def read_marker(root: Path) -> dict | None:
    try:
        data = json.loads(marker_path(root).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) else {"cluster": None}


def _entries(root: Path) -> list[str]:
    names = [p.name for p in root.iterdir()]
    if (root / "state" / "cluster-id").is_file():
        names.append("state/cluster-id")
    return names


def check_claimable(layout: Layout, cluster_name: str, spec_dir: Path) -> None:
    """Raise if `up` must not use the data folder; writes nothing."""
    root = layout.root.resolve()
    problem = data_dir_problem(root, spec_dir, Path.home().resolve())
    if problem is None and root.exists():
        if not root.is_dir():
            problem = f"{root} exists and is not a folder"
        else:
            problem = claim_problem(root, _entries(root), read_marker(root), cluster_name)
    if problem:
        raise AirscaleError(f"cluster.data_dir: {problem}", FIX + ", or empty this one")


def claim(layout: Layout, cluster_name: str, spec_dir: Path) -> None:
    """Make the data folder if needed and mark it as this cluster's (after `check_claimable`)."""
    check_claimable(layout, cluster_name, spec_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    if read_marker(layout.root) is None:
        tmp = marker_path(layout.root).with_suffix(".tmp")
        tmp.write_text(json.dumps({"cluster": cluster_name, "id": uuid.uuid4().hex}) + "\n")
        os.replace(tmp, marker_path(layout.root))


def check_purge(layout: Layout, cluster_name: str, spec_dir: Path) -> None:
    """Raise unless `down --purge` may delete the data folder; deletes nothing."""
    root = layout.root.resolve()
    ok, reason = purge_allowed(root, read_marker(root), cluster_name, spec_dir, Path.home().resolve())
    if not ok:
        raise AirscaleError(
            f"down --purge refuses to delete cluster.data_dir: {reason}; nothing was stopped or deleted",
            f"check cluster.data_dir and cluster.name; delete {root} yourself if it really is disposable",
        )
