"""Every rendered object validates offline, one test per kind, over several specs and both
executors; the Helm values validate against the official chart's values schema.

The negative cases show the validators bite: a misspelt field or a wrong type fails.
"""

from __future__ import annotations

import copy
import hashlib

import kubernetes_validate
import pytest

from .deploy_cases import (
    CHART_SCHEMA, CHART_VALUES, CRD_SCHEMAS, K8S_VERSION, bundles, chart_defaults, chart_validator,
    crd_validator, helm_coalesce,
)

BUILTIN_KINDS = ["ConfigMap", "Deployment", "NetworkPolicy", "Role", "RoleBinding", "Service", "ServiceAccount"]
CRD_KINDS = [kind for _, kind in CRD_SCHEMAS]
CHART_SCHEMA_SHA256 = "a527d8090ea54d66a3203d0ad9faf0641de96efd41061009a1b79df4c69ebfd5"
CHART_VALUES_SHA256 = "7b134663734772e5dfc6b797d3958378e92ccb5e32f2f4b76c1c88a488a0843d"


def objects_of_kind(kind: str) -> list[tuple[str, dict]]:
    out = []
    for (name, ex), b in bundles().items():
        out += [(f"{name}/{ex}/{o['metadata']['name']}", o) for o in b.objects() if o["kind"] == kind]
    return out


def test_every_rendered_kind_is_covered_by_a_validation_test() -> None:
    kinds = {o["kind"] for b in bundles().values() for o in b.objects()}
    assert kinds == set(BUILTIN_KINDS) | set(CRD_KINDS), "a new kind needs its validation test"


@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in BUILTIN_KINDS])
def test_builtin_kind_validates_against_kubernetes_schema(kind: str) -> None:
    objs = objects_of_kind(kind)
    assert objs, f"no {kind} rendered"
    for where, obj in objs:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {e.message} at {'.'.join(str(p) for p in e.path)}")


@pytest.mark.parametrize("api_version,kind", [pytest.param(a, k, id=k) for a, k in CRD_SCHEMAS])
def test_custom_resource_validates_against_its_crd_schema(api_version: str, kind: str) -> None:
    objs = objects_of_kind(kind)
    assert objs, f"no {kind} rendered"
    validator = crd_validator(api_version, kind)
    for where, obj in objs:
        assert obj["apiVersion"] == api_version, where
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
        assert not errors, f"{where}: {errors}"


def values_files() -> list[tuple[str, str, str]]:
    """(spec, executor, file) of every Helm values file: values.yaml and the queue releases' ones."""
    return [(n, ex, f) for (n, ex), b in bundles().items() for f in b.values_files()]


VALUES_FILES = [pytest.param(n, e, f, id=f"{n}-{e}-{f}") for n, e, f in values_files()]


def test_queue_releases_are_among_the_validated_values() -> None:
    assert any(f.startswith("values-") for _, _, f in values_files()), "no worker-only release rendered"


@pytest.mark.parametrize("name,executor,file", VALUES_FILES)
def test_helm_values_validate_against_chart_schema(name: str, executor: str, file: str) -> None:
    values = bundles()[(name, executor)].values_files()[file]
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in chart_validator().iter_errors(values)]
    assert not errors


@pytest.mark.parametrize("name,executor,file", VALUES_FILES)
def test_helm_values_merged_over_chart_defaults_validate(name: str, executor: str, file: str) -> None:
    """Helm checks the schema after merging the user's values over the chart's values.yaml."""
    values = bundles()[(name, executor)].values_files()[file]
    merged = helm_coalesce(chart_defaults(), values)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in chart_validator().iter_errors(merged)]
    assert not errors
    # Spot-check the merge itself: ours won, the chart's other defaults stayed.
    assert merged["workers"]["persistence"]["size"] == chart_defaults()["workers"]["persistence"]["size"]
    assert merged["executor"] == values["executor"]


def test_chart_copies_are_verbatim() -> None:
    assert hashlib.sha256(CHART_SCHEMA.read_bytes()).hexdigest() == CHART_SCHEMA_SHA256
    assert hashlib.sha256(CHART_VALUES.read_bytes()).hexdigest() == CHART_VALUES_SHA256


# -- the validators reject what they should ---------------------------------------------------
def _first(kind: str) -> dict:
    return copy.deepcopy(objects_of_kind(kind)[0][1])


def _deployment_typo(d: dict) -> None:
    d["spec"]["replica"] = d["spec"].pop("replicas")


def _deployment_port_as_text(d: dict) -> None:
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"


def _role_without_verbs(r: dict) -> None:
    del r["rules"][0]["verbs"]


@pytest.mark.parametrize(
    "kind,break_it",
    [
        pytest.param("Deployment", _deployment_typo, id="deployment-misspelt-field"),
        pytest.param("Deployment", _deployment_port_as_text, id="deployment-port-not-integer"),
        pytest.param("Role", _role_without_verbs, id="role-rule-without-verbs"),
    ],
)
def test_kubernetes_validation_rejects_broken_objects(kind, break_it) -> None:
    obj = _first(kind)
    break_it(obj)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "kind,path,value",
    [
        pytest.param("ScaledObject", ("spec", "maxReplicaCont"), 3, id="scaledobject-misspelt-field"),
        pytest.param("ScaledObject", ("spec", "minReplicaCount"), "1", id="scaledobject-count-as-text"),
        pytest.param("TriggerAuthentication", ("spec", "secretTargetRefs"), [], id="triggerauth-misspelt-field"),
        pytest.param("PrometheusRule", ("spec", "groups", 0, "rules", 0, "for"), "six minutes", id="rule-bad-duration"),
        pytest.param("ServiceMonitor", ("spec", "endpoints", 0, "interval"), "30 s", id="monitor-bad-interval"),
        pytest.param("ServiceMonitor", ("spec", "endpoint"), [], id="monitor-misspelt-field"),
    ],
)
def test_crd_validation_rejects_broken_objects(kind, path, value) -> None:
    obj = _first(kind)
    node = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    api_version = obj["apiVersion"]
    assert list(crd_validator(api_version, kind).iter_errors(obj))


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param({"workers": {"replica": 2}}, id="misspelt-worker-key"),
        pytest.param({"scheduler": {"replicas": "two"}}, id="replicas-not-integer"),
        pytest.param({"executor": "CeleryExecuter "}, id="bad-executor-name"),
    ],
)
def test_chart_schema_rejects_broken_values(patch: dict) -> None:
    values = copy.deepcopy(bundles()[("two-queues", "celery")].values)
    for key, sub in patch.items():
        if isinstance(sub, dict):
            values.setdefault(key, {}).update(sub)
        else:
            values[key] = sub
    assert list(chart_validator().iter_errors(values))
