"""Every key the planner may set exists in the installed Airflow, with the stock value the
plan reports (so `--explain` and the bench report do not lie about the defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airscale.tuning.planner import AIRFLOW_STOCK


def _defaults() -> dict[tuple[str, str], str]:
    import airflow
    from airflow.providers.celery.get_provider_info import get_provider_info

    core = yaml.safe_load((Path(airflow.__file__).parent / "config_templates" / "config.yml").read_text())
    out = {}
    for section, body in [*core.items(), *get_provider_info()["config"].items()]:
        for key, opt in (body.get("options") or {}).items():
            out[(section, key)] = opt.get("default")
    return out


DEFAULTS = _defaults()


@pytest.mark.parametrize("key", sorted(AIRFLOW_STOCK), ids=lambda k: f"{k[0]}.{k[1]}")
def test_key_exists_with_stock_default(key):
    assert key in DEFAULTS, f"{key} is not an Airflow 3.3 setting"
    assert float(DEFAULTS[key]) == float(AIRFLOW_STOCK[key])
