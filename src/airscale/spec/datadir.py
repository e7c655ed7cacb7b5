"""Which folders may be a cluster's `data_dir` (pure).

`airscale up` makes the data folder mode 0755 and `airscale down --purge` deletes it whole, so
a data_dir of `/`, the home folder or the spec's own folder would be a disaster a typo away.
The rule is here, in the spec layer, so `airscale validate` and every command that loads a
spec refuse such a folder before anything runs; `airscale.runtime.datadir` applies it again
before it writes or deletes, and adds the marker file that proves a folder is a cluster's.
"""

from __future__ import annotations

import os
from pathlib import Path

# Folders of the system and of its users. A data_dir may be below them (/var/lib/airscale/x,
# /tmp/x), never one of them.
SYSTEM_FOLDERS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
    "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/sbin", "/usr/share", "/var", "/var/lib",
    "/var/log", "/var/run", "/var/tmp", "/var/cache", "/var/spool", "/var/mail", "/var/opt",
})


def data_dir_problem(path: Path, spec_dir: Path | None, home: Path | None) -> str | None:
    """Why `path` must not be a cluster's data folder, or None. Paths are taken as given
    (callers resolve symlinks); `..` is folded so /tmp/x/.. is /tmp. A `spec_dir` or `home`
    of None is not checked against."""
    p = os.path.normpath(os.path.abspath(path))
    if p in SYSTEM_FOLDERS:
        return f"{p} is a system folder"
    for other, what in ((spec_dir, "the spec file's folder"), (home, "your home folder")):
        if other is None:
            continue
        other = os.path.normpath(os.path.abspath(other))
        if p == other:
            return f"{p} is {what}"
        if other.startswith(p.rstrip("/") + "/"):
            return f"{p} holds {what} ({other})"
    return None


FIX = "point cluster.data_dir at a folder of its own, e.g. .airscale/<cluster name> next to the spec"
