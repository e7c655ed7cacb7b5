"""Which Airflow and airscale a cluster's processes run, and which are installed.

`up` writes `state/versions.conf` with the versions it starts the processes with (the
installed ones: `airflow` and the airscale daemons run from this Python's environment), and
every Airflow process and airscale daemon lists the file among its inputs
(`Component.reads`): after a version change the apply plan restarts each of them ("restart
versions.conf: apache-airflow changed"). The file is what the cluster runs until the next `up`,
which `airscale upgrade` compares with what is installed now.

A plain `up` refuses to run on a running cluster whose Airflow differs from the installed one
(`upgrade_problem`): its `airflow db migrate` would run under the old version's processes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

AIRFLOW = "apache-airflow"
AIRSCALE = "airscale"


@dataclass(frozen=True)
class Versions:
    airflow: str
    airscale: str
    python: str  # the interpreter of the environment they run from

    def render(self) -> str:
        return ("# Written by `airscale up`: the versions this cluster's processes were started with\n"
                "# (`airscale upgrade` compares them with the installed ones).\n"
                f"{AIRFLOW} = {self.airflow}\n{AIRSCALE} = {self.airscale}\npython = {self.python}\n")


def installed() -> Versions:
    from importlib.metadata import version

    return Versions(version(AIRFLOW), version(AIRSCALE), sys.executable)


def parse(text: str) -> Versions | None:
    """The versions of a `versions.conf` text (pure); None when it names no Airflow."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip()
    if not values.get(AIRFLOW):
        return None
    return Versions(values[AIRFLOW], values.get(AIRSCALE, ""), values.get("python", ""))


def from_migrated_stamp(text: str) -> str | None:
    """The Airflow version of `state/migrated` ("REVISION airflow VERSION"), which clusters
    brought up before versions.conf existed have (pure)."""
    parts = text.split()
    return parts[2] if len(parts) >= 3 and parts[1] == "airflow" else None


def recorded(versions_file: Path, migrated_file: Path) -> Versions | None:
    """What the cluster was last brought up with: versions.conf, else the Airflow version of
    the last migration; None when neither says."""
    try:
        got = parse(versions_file.read_text())
        if got is not None:
            return got
    except OSError:
        pass
    try:
        airflow = from_migrated_stamp(migrated_file.read_text())
    except OSError:
        return None
    return Versions(airflow, "", "") if airflow else None


def upgrade_problem(running: Versions | None, now: Versions) -> str | None:
    """Why a plain `up` must not apply to a running cluster (pure): it runs another Airflow
    than the installed one, and `up` would migrate the database under its processes."""
    if running is None or running.airflow == now.airflow:
        return None
    return (f"the cluster runs Airflow {running.airflow}, and Airflow {now.airflow} is installed: its "
            "database migration must not run under the running processes")
