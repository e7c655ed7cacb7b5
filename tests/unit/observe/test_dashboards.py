"""Dashboards as code: structure, and only documented metric names in their queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airscale.observe.dashboards import all_dashboards, export, queries
from airscale.spec import Spec

DOC = (Path(__file__).resolve().parents[3] / "docs" / "metrics.md").read_text()
METRIC = re.compile(r"\b((?:airflow|airscale|pg|redis)_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_sum", "_count")


@pytest.mark.parametrize("data, autoscaled", [
    pytest.param({"autoscaling": {"enabled": False}}, False, id="scale"),
    pytest.param({"queues": {"default": {"min_workers": 2, "max_workers": 2}}}, False, id="fixed-workers"),
    pytest.param({}, True, id="with-autoscaler")])
def test_every_panel_has_queries_and_a_place(data, autoscaled):
    boards = all_dashboards(Spec.model_validate(data))
    assert set(boards) == {"overview", "schedulers", "workers", "dags", "database"}
    assert len({b["uid"] for b in boards.values()}) == 5
    for b in boards.values():
        for p in b["panels"]:
            assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
            assert p["gridPos"]["w"] == 12
    autoscaler = any("airscale_autoscaler" in q for b in boards.values() for _, q in queries(b))
    assert autoscaler is autoscaled  # panels only for parts that run


def test_queries_use_documented_metrics_only():
    names = set()
    for b in all_dashboards(Spec.model_validate({"autoscaling": {"enabled": True}})).values():
        for _, q in queries(b):
            names |= set(METRIC.findall(q))
    undocumented = []
    for n in sorted(names):
        base = next((n[: -len(s)] for s in SUFFIXES if n.endswith(s)), n)
        if n not in DOC and base not in DOC and not n.startswith(("pg_", "redis_", "airscale_autoscaler_")):
            undocumented.append(n)
    assert not undocumented, f"document these in docs/metrics.md: {undocumented}"


def test_export_writes_dashboards_and_provisioning(tmp_path):
    written = export(Spec.model_validate({"cluster": {"name": "prod", "base_port": 29500}}), tmp_path)
    assert len(written) == 7
    board = json.loads((tmp_path / "dashboards" / "airscale-overview.json").read_text())
    assert board["title"].startswith("airscale prod")
    ds = (tmp_path / "provisioning" / "datasources" / "airscale.yaml").read_text()
    assert "http://127.0.0.1:29503" in ds
