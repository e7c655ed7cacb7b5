"""Airflow `[core] hostname_callable`: one name per airscale component.

Several schedulers and workers share one machine; giving each its own name
(`scheduler-1.<host>`) lets `airscale status` match job-table heartbeats to processes and shows
in `task_instance.hostname` which worker ran a task. Processes outside airscale get the FQDN.
"""

from __future__ import annotations

import os
import socket


def get_hostname() -> str:
    return os.environ.get("AIRSCALE_HOSTNAME") or socket.getfqdn()


def component_hostname(component: str) -> str:
    return f"{component}.{socket.gethostname()}"
