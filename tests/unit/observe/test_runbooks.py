"""Every alert rule has a runbook section in docs/runbooks.md, and every rendered rule links it.

The anchors are computed from the markdown headings the way GitHub does, so a renamed heading
or a new rule without its section fails here rather than as a dead link in a 3 a.m. page.
Rules are enumerated over specs that turn on everything a rule depends on (Celery, the
autoscaler, supervisord) and over the Kubernetes environments, local and rendered.
"""

from __future__ import annotations

import re

import pytest
import yaml

from airscale.deploy.k8s.monitoring import prometheus_rule
from airscale.observe.rules import render_rules, rule_group, rules, runbook_anchor
from airscale.spec import Spec
from tests.conftest import REPO

RUNBOOKS = REPO / "docs" / "runbooks.md"

SPECS = {
    "defaults": {},
    "autoscaling": {"autoscaling": {"enabled": True}},
    "dev": {"cluster": {"profile": "dev"}},
    "backup": {"backup": {"every_hours": 24}},
    "ha": {"autoscaling": {"enabled": True}, "ha": {"database": {"enabled": True}}},
}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives headings: lower case, punctuation other than '-' and '_'
    dropped, spaces to '-', repeats numbered -1, -2 ..."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if not m:
            continue
        anchor = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(anchor, 0)
        seen[anchor] = n + 1
        out.add(anchor if n == 0 else f"{anchor}-{n}")
    return out


def all_rule_names() -> set[str]:
    names = set()
    for data in SPECS.values():
        names |= {r.name for r in rules(Spec.model_validate(data))}
    return names


def test_github_anchors_follow_githubs_rules():
    md = "# Runbooks\n## NoHealthyScheduler\n## Port in use: `ss -ltn`\n## a\n## a\n```\n# not a heading\n```\n"
    assert github_anchors(md) == {"runbooks", "nohealthyscheduler", "port-in-use-ss--ltn", "a", "a-1"}


def test_every_rule_is_enumerated():
    # A spec with Celery and the autoscaler gets every rule the local environment can produce;
    # if a new rule depends on something else, add a spec above that turns it on.
    source = (REPO / "src/airscale/observe/rules.py").read_text()
    in_source = set(re.findall(r'Rule\(\s*"([A-Za-z]+)"', source))
    assert in_source and in_source == all_rule_names()


@pytest.mark.parametrize("name", sorted(all_rule_names()))
def test_every_rule_has_a_runbook_section(name):
    anchors = github_anchors(RUNBOOKS.read_text())
    assert runbook_anchor(name) in anchors, f"add a '## {name}' section to docs/runbooks.md"


def test_runbook_links_inside_the_page_resolve():
    text = RUNBOOKS.read_text()
    anchors = github_anchors(text)
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in anchors, link


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_every_rendered_rule_carries_its_runbook_url(spec_name):
    spec = Spec.model_validate(SPECS[spec_name])
    local = yaml.safe_load(render_rules(spec))["groups"][0]["rules"]
    k8s = [r for executor in ("celery", "kubernetes")
           for r in prometheus_rule(spec, executor)["spec"]["groups"][0]["rules"]]
    for r in local + k8s:
        assert r["annotations"]["runbook_url"] == f"docs/runbooks.md#{r['alert'].lower()}", r


def test_runbook_base_url_comes_from_the_spec():
    base = "https://git.example.com/ops/airscale/-/blob/main/docs/runbooks.md"
    spec = Spec.model_validate({"monitoring": {"runbook_base_url": base}})
    urls = {r["annotations"]["runbook_url"] for r in rule_group(spec)["rules"]}
    assert f"{base}#nohealthyscheduler" in urls
    assert all(u.startswith(base + "#") for u in urls)
