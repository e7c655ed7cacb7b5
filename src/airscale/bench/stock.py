"""What "stock" means for the bench: Airflow's own defaults for everything airscale does not
need to run at all.

airscale derives more than ports and secrets for every cluster (recovery settings, metrics,
refresh interval, ...). The stock cluster gets each of those back at Airflow's default, read
from the installed Airflow (config.yml and the Celery provider's provider info), so the
comparison stays honest when other parts of airscale add derived settings later.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

# Needed for a cluster to run at all: executor, paths, connection URLs, secrets, ports, auth.
NEEDED_SECTIONS = {"database", "api", "api_auth", "logging", "fab"}
NEEDED_KEYS = {
    ("core", "executor"), ("core", "dags_folder"), ("core", "fernet_key"),
    ("core", "hostname_callable"), ("core", "execution_api_server_url"),
    ("core", "simple_auth_manager_users"), ("core", "simple_auth_manager_passwords_file"),
    ("core", "auth_manager"),
    # Stock loads ~80 example DAGs; they would only add parsing noise to both clusters.
    ("core", "load_examples"),
    ("operators", "default_queue"), ("celery", "broker_url"), ("celery", "result_backend"),
}
# Defaults Airflow applies in code rather than in config.yml.
CODE_DEFAULTS: dict[tuple[str, str], Any] = {
    ("celery_broker_transport_options", "visibility_timeout"): 86400,  # default_celery.py
}


@lru_cache(maxsize=1)
def airflow_defaults() -> dict[tuple[str, str], Any]:
    import airflow
    from airflow.providers.celery.get_provider_info import get_provider_info

    core = yaml.safe_load((Path(airflow.__file__).parent / "config_templates" / "config.yml").read_text())
    out: dict[tuple[str, str], Any] = {}
    for section, body in [*core.items(), *get_provider_info()["config"].items()]:
        for key, opt in (body.get("options") or {}).items():
            if opt.get("default") is not None:
                out[(section, key)] = opt["default"]
    out.update(CODE_DEFAULTS)
    return out


def stock_overrides(derived: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """airflow_config that puts every derived setting not needed to run back to Airflow's
    default; also the keys that could not be restored (no known default)."""
    defaults = airflow_defaults()
    overrides: dict[str, dict[str, Any]] = {}
    left: list[str] = []
    for section, values in derived.items():
        if section in NEEDED_SECTIONS:
            continue
        for key in values:
            if (section, key) in NEEDED_KEYS:
                continue
            if (section, key) in defaults:
                overrides.setdefault(section, {})[key] = defaults[(section, key)]
            else:
                left.append(f"{section}.{key}")
    return overrides, left
