"""Dashboards as code: structure, and only documented metric names in their queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airscale.observe.dashboards import all_dashboards, export, queries, with_matchers
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


@pytest.mark.parametrize(
    "expr, labels, expected",
    [
        ("airscale_dag_runs", ("cluster",), 'airscale_dag_runs{cluster=~"$cluster"}'),
        ('sum by (queue) (airscale_task_instances{state="queued"})', ("cluster", "queue"),
         'sum by (queue) (airscale_task_instances{state="queued", cluster=~"$cluster", queue=~"$queue"})'),
        ("histogram_quantile(0.95, sum by (le) (rate(airflow_task_duration_seconds_bucket[$__rate_interval])))",
         ("cluster",),
         'histogram_quantile(0.95, sum by (le) (rate(airflow_task_duration_seconds_bucket{cluster=~"$cluster"}'
         "[$__rate_interval])))"),
        ("sum(pg_stat_activity_count) / max(pg_settings_max_connections)", ("cluster",),
         'sum(pg_stat_activity_count{cluster=~"$cluster"}) / max(pg_settings_max_connections{cluster=~"$cluster"})'),
        ("airscale_dag_runs", (), "airscale_dag_runs"),
    ],
)
def test_with_matchers(expr, labels, expected):
    assert with_matchers(expr, labels) == expected


def test_variables_filters_and_defaults():
    spec = Spec.model_validate({"cluster": {"name": "prod"}})
    boards = all_dashboards(spec)
    names = {n: [v["name"] for v in b["templating"]["list"]] for n, b in boards.items()}
    assert names == {"overview": ["datasource", "cluster", "queue"], "schedulers": ["datasource", "cluster", "component"],
                     "workers": ["datasource", "cluster", "queue"], "dags": ["datasource", "cluster", "dag_id"],
                     "database": ["datasource", "cluster"]}
    for b in boards.values():
        ds, cluster = b["templating"]["list"][:2]
        assert ds["current"]["value"] == "airscale-prod"  # the provisioned data source
        assert cluster["current"]["value"] == ["prod"]
        for _, q in queries(b):  # every metric selector narrowed to the chosen clusters
            for m in METRIC.finditer(q):
                assert q[m.end():].startswith("{") and 'cluster=~"$cluster"' in q[m.end():].split("}")[0], q
        used = {v for _, q in queries(b) for v in re.findall(r"\$([a-z_]+)", q)} - {"__rate_interval"}
        assert used <= set(names[b["uid"].rsplit("-", 1)[-1]]), used  # no query reads a missing variable
    # Thresholds come from the spec's alert thresholds.
    t = Spec.model_validate({"monitoring": {"thresholds": {"queued_task_warning_seconds": 77}}})
    panel = next(p for p in all_dashboards(t)["overview"]["panels"] if p["title"] == "Oldest queued task age")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 77, 600]


def test_no_queue_variable_without_queues():
    boards = all_dashboards(Spec.model_validate({"cluster": {"profile": "dev"}}))
    assert all("queue" not in [v["name"] for v in b["templating"]["list"]] for b in boards.values())
    assert not any("$queue" in q for b in boards.values() for _, q in queries(b))
