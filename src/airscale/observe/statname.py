"""Airflow `[metrics] stat_name_handler`: tags every statsd metric with its component.

Airflow calls this with the stat name and, InfluxDB style, its tags (`ti.finish,dag_id=a`);
what it returns goes on the wire. It runs inside every Airflow process, task processes too,
so it must never raise: Airflow only catches its own InvalidStatsNameException.
"""

from __future__ import annotations

import os
import re

# Airflow's own allowed characters (validators.ALLOWED_CHARACTERS) plus the tag separators.
_BAD = re.compile(r"[^A-Za-z0-9_.\-/,=]")


def component() -> str:
    """`scheduler-2` from AIRSCALE_HOSTNAME `scheduler-2.<host>`; empty outside airscale."""
    host = os.environ.get("AIRSCALE_HOSTNAME", "")
    return _BAD.sub("_", host.split(".", 1)[0]).replace(",", "_").replace("=", "_")


def add_component(stat: str) -> str:
    name = _BAD.sub("_", stat)
    comp = component()
    return f"{name},component={comp}" if comp else name
