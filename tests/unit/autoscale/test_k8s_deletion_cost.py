"""Scale-down safety on Kubernetes: which pods get which pod-deletion-cost (pure, table-driven),
and what the real `kubernetes` client sends for it.

No kube-apiserver can run here (no container runtime, no apiserver binary on PyPI or Debian),
so the I/O tests run the real `kubernetes` client against a small local HTTP server that
answers the two calls the writer makes (list pods, patch a pod) the way the API server's REST
interface does, and records every request: method, path, query, content type and body. That
proves what goes over the wire; it does not prove how a real API server and ReplicaSet
controller react to it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from prometheus_client import CollectorRegistry

from airscale.autoscale import in_cluster
from airscale.autoscale.deletion_cost import (
    COST_PER_TASK, DELETION_COST, MAX_COST, STRATEGIC_MERGE_PATCH, CostPatch, PodAnnotator, WorkerPod,
    desired_costs,
)
from airscale.autoscale.in_cluster import DeletionCostHook, KedaActuator, worker_views
from airscale.autoscale.loop import Autoscaler
from airscale.autoscale.metrics import AutoscalerMetrics
from airscale.autoscale.plan import WorkerState, WorkerView
from airscale.autoscale.signals import NodeReport, QueueSnapshot, Snapshot
from airscale.deploy import k8s
from airscale.errors import AirscaleError
from airscale.runtime.layout import Layout
from airscale.spec import load_spec
from tests.conftest import write_spec

W = COST_PER_TASK


# -- the decision (pure) ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pods,active,expected",
    [
        pytest.param([WorkerPod("w-a")], {"w-a": 0}, [], id="idle-never-annotated-no-write"),
        pytest.param([WorkerPod("w-a")], {"w-a": 3}, [CostPatch("w-a", 3 * W, None, 3)], id="busy-gets-cost"),
        pytest.param([WorkerPod("w-a", str(3 * W))], {"w-a": 3}, [], id="unchanged-no-write"),
        pytest.param([WorkerPod("w-a", str(3 * W))], {"w-a": 1}, [CostPatch("w-a", W, str(3 * W), 1)],
                     id="fewer-tasks-lower-cost"),
        pytest.param([WorkerPod("w-a", str(2 * W))], {"w-a": 0}, [CostPatch("w-a", 0, str(2 * W), 0)],
                     id="became-idle-back-to-zero"),
        pytest.param([WorkerPod("w-a", "0")], {"w-a": 0}, [], id="idle-already-zero"),
        pytest.param([WorkerPod("w-a", str(5 * W))], {}, [], id="no-answer-keeps-protection"),
        pytest.param([WorkerPod("w-a", str(5 * W))], {"w-a": None}, [], id="none-answer-keeps-protection"),
        pytest.param([WorkerPod("w-a", None, terminating=True)], {"w-a": 4}, [], id="terminating-left-alone"),
        pytest.param([WorkerPod("w-a", "lots")], {"w-a": 0}, [CostPatch("w-a", 0, "lots", 0)],
                     id="unparsable-annotation-rewritten"),
        pytest.param([WorkerPod("w-a")], {"w-a": 10**9}, [CostPatch("w-a", MAX_COST, None, 10**9)],
                     id="capped-at-int32"),
        pytest.param([WorkerPod("w-c"), WorkerPod("w-a"), WorkerPod("w-b", "100")], {"w-a": 2, "w-b": 1, "w-c": 0},
                     [CostPatch("w-a", 2 * W, None, 2)], id="mixed-only-changes-in-name-order"),
        pytest.param([], {"w-gone": 3}, [], id="answer-without-pod"),
    ],
)
def test_desired_costs(pods: list[WorkerPod], active: dict, expected: list[CostPatch]) -> None:
    assert desired_costs(pods, active) == expected


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(5)])
def test_costs_order_busy_above_idle_and_settle(seed: int) -> None:
    """Invariants over random fleets: after writing, a busier pod never costs less than an idler
    one, and a second pass with the same counts writes nothing."""
    import random

    rng = random.Random(seed)
    pods = [WorkerPod(f"w-{i}", rng.choice([None, "0", "700", "x"])) for i in range(12)]
    active = {p.name: rng.choice([0, 0, 1, 2, 5, None]) for p in pods}
    written = {p.pod: str(p.cost) for p in desired_costs(pods, active)}
    after = [WorkerPod(p.name, written.get(p.name, p.annotation)) for p in pods]
    assert desired_costs(after, active) == []
    known = [(active[p.name], int(p.annotation or 0)) for p in after if active[p.name] is not None]
    for n1, c1 in known:
        for n2, c2 in known:
            if n1 > n2:
                assert c1 > c2


# -- pods -> worker views (pure) ----------------------------------------------------------------
def pod(name: str, queue: str | None = "default", **kw) -> WorkerPod:
    return WorkerPod(name, labels={k8s.QUEUE_LABEL: queue} if queue else {}, **kw)


def report(*queues: str, active: int = 0, reserved: int = 0) -> NodeReport:
    return NodeReport(frozenset(queues), active, reserved)


@pytest.mark.parametrize(
    "pods,reports,expected",
    [
        pytest.param([pod("w-1")], {"w-1": report("default", active=2)},
                     {"default": [("w-1", WorkerState.SERVING, 2)], "reports": []}, id="serving"),
        pytest.param([pod("w-1")], {}, {"default": [("w-1", WorkerState.STARTING, None)], "reports": []},
                     id="not-answering-is-starting"),
        pytest.param([pod("w-1")], {"w-1": report(active=1)},
                     {"default": [("w-1", WorkerState.DRAINING, 1)], "reports": []}, id="cancelled-consumer-draining"),
        pytest.param([pod("w-1", terminating=True)], {"w-1": report("default", active=1)},
                     {"default": [("w-1", WorkerState.STOPPING, 1)], "reports": []}, id="terminating-is-stopping"),
        pytest.param([pod("r-2", "reports"), pod("r-1", "reports"), pod("w-1")],
                     {"r-1": report("reports"), "r-2": report("reports", active=3), "w-1": report("default")},
                     {"default": [("w-1", WorkerState.SERVING, 0)],
                      "reports": [("r-1", WorkerState.SERVING, 0), ("r-2", WorkerState.SERVING, 3)]},
                     id="per-queue-by-label"),
        pytest.param([pod("x-1", None), pod("x-2", "other")], {}, {"default": [], "reports": []},
                     id="foreign-pods-ignored"),
    ],
)
def test_worker_views(pods, reports, expected) -> None:
    views = worker_views(pods, reports, ["default", "reports"])
    assert {q: [(v.name, v.state, v.active) for v in vs] for q, vs in views.items()} == expected
    for vs in views.values():
        assert [v.index for v in vs] == list(range(1, len(vs) + 1))


def test_queue_label_is_the_one_the_rendering_sets() -> None:
    assert in_cluster.QUEUE_LABEL == k8s.QUEUE_LABEL
    assert DELETION_COST == k8s.DELETION_COST


# -- environment of the rendered Deployment -----------------------------------------------------
ENV = {
    "AIRSCALE_DATABASE_URL": "postgresql://u:p@airflow-pgbouncer.airflow:6543/airflow-metadata",
    "AIRSCALE_BROKER_URL": "redis://:pw@airflow-redis:6379/0",
    "AIRSCALE_NAMESPACE": "airflow",
    "AIRSCALE_WORKER_SELECTOR": "tier=airflow,component=worker,release in (airflow)",
}


@pytest.fixture
def spec(spec_dir):
    return load_spec(write_spec(spec_dir, {
        "cluster": {"data_dir": str(spec_dir / "data")},
        "queues": {"default": {"min_workers": 1, "max_workers": 3, "concurrency": 4},
                   "reports": {"min_workers": 0, "max_workers": 2, "concurrency": 2}},
    }))


def test_with_urls_takes_the_secrets_from_the_environment(spec) -> None:
    s = in_cluster.with_urls(spec, ENV)
    assert s.database.url == ENV["AIRSCALE_DATABASE_URL"] and s.broker.url == ENV["AIRSCALE_BROKER_URL"]


@pytest.mark.parametrize(
    "env,message",
    [
        pytest.param({k: v for k, v in ENV.items() if k != "AIRSCALE_BROKER_URL"}, "AIRSCALE_BROKER_URL",
                     id="missing-broker"),
        pytest.param({}, "AIRSCALE_DATABASE_URL, AIRSCALE_BROKER_URL, AIRSCALE_NAMESPACE", id="outside-a-pod"),
        pytest.param({**ENV, "AIRSCALE_DATABASE_URL": "mysql://u@h/db"}, "not a usable URL", id="bad-url"),
    ],
)
def test_with_urls_errors_name_the_variable(spec, env, message) -> None:
    with pytest.raises(AirscaleError) as e:
        in_cluster.with_urls(spec, env)
    assert message in e.value.problem


# -- the I/O, with the real kubernetes client against a recording HTTP server -------------------
@dataclass
class FakeApiServer:
    """Answers GET /api/v1/namespaces/{ns}/pods and PATCH /api/v1/namespaces/{ns}/pods/{name}."""

    pods: dict[str, dict] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    patch_status: dict[str, int] = field(default_factory=dict)  # pod -> forced HTTP error
    url: str = ""

    def pod(self, name: str, annotation: str | None = None, terminating: bool = False, queue: str = "default"):
        meta = {"name": name, "namespace": "airflow",
                "labels": {"tier": "airflow", "component": "worker", "release": "airflow", k8s.QUEUE_LABEL: queue}}
        if annotation is not None:
            meta["annotations"] = {DELETION_COST: annotation}
        if terminating:
            meta["deletionTimestamp"] = "2026-11-30T05:00:00Z"
        self.pods[name] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}

    def patches(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "PATCH"]


def _handler(api: FakeApiServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self, body: bytes | None) -> tuple[list[str], dict]:
            u = urlparse(self.path)
            self.server_record = {
                "method": self.command, "path": u.path, "query": parse_qs(u.query),
                "content_type": self.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
            api.requests.append(self.server_record)
            return u.path.strip("/").split("/"), parse_qs(u.query)

        def do_GET(self):  # noqa: N802
            parts, _ = self._record(None)
            if parts[:3] == ["api", "v1", "namespaces"] and parts[4:] == ["pods"]:
                self._send(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
                                 "items": list(api.pods.values())})
            else:
                self._send(404, {"kind": "Status", "code": 404})

        def do_PATCH(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts, _ = self._record(body)
            name = parts[-1]
            status = api.patch_status.get(name) or (404 if name not in api.pods else 200)
            if status != 200:
                self._send(status, {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": status,
                                    "reason": "NotFound" if status == 404 else "Forbidden"})
                return
            if self.headers.get("Content-Type") == STRATEGIC_MERGE_PATCH:
                meta = api.pods[name]["metadata"]
                meta.setdefault("annotations", {}).update(json.loads(body)["metadata"]["annotations"])
            self._send(200, api.pods[name])

    return Handler


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    fake = FakeApiServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield fake
    server.shutdown()
    server.server_close()


def core_v1(url: str):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = url
    return client.CoreV1Api(client.ApiClient(cfg))


SELECTOR = "tier=airflow,component=worker,release in (airflow,airflow-q-reports)"


def annotator(api: FakeApiServer) -> PodAnnotator:
    return PodAnnotator(core_v1(api.url), "airflow", SELECTOR)


def test_pods_are_listed_by_the_worker_selector(api) -> None:
    api.pod("w-busy", "200")
    api.pod("w-going", terminating=True)
    pods = annotator(api).pods()
    assert [(p.name, p.annotation, p.terminating) for p in pods] == [("w-busy", "200", False),
                                                                      ("w-going", None, True)]
    assert pods[0].labels[k8s.QUEUE_LABEL] == "default"
    [req] = api.requests
    assert req["method"] == "GET" and req["path"] == "/api/v1/namespaces/airflow/pods"
    assert req["query"]["labelSelector"] == [SELECTOR]


def test_sync_patches_only_changed_pods_with_a_strategic_merge_patch(api) -> None:
    api.pod("w-busy")          # 3 active, unannotated -> 300
    api.pod("w-idle")          # idle, unannotated -> nothing
    api.pod("w-same", "100")   # 1 active, already 100 -> nothing
    api.pod("w-done", "500")   # idle now -> 0
    api.pod("w-quiet", "400")  # did not answer -> nothing
    done = annotator(api).sync({"w-busy": 3, "w-idle": 0, "w-same": 1, "w-done": 0})
    assert [(p.pod, p.cost) for p in done] == [("w-busy", 300), ("w-done", 0)]
    patches = api.patches()
    assert [r["path"] for r in patches] == ["/api/v1/namespaces/airflow/pods/w-busy",
                                            "/api/v1/namespaces/airflow/pods/w-done"]
    for r, cost in zip(patches, ("300", "0"), strict=True):
        assert r["content_type"] == STRATEGIC_MERGE_PATCH
        assert r["body"] == {"metadata": {"annotations": {DELETION_COST: cost}}}
    # The server now holds the new values: a second pass with the same counts writes nothing.
    api.requests.clear()
    assert annotator(api).sync({"w-busy": 3, "w-idle": 0, "w-same": 1, "w-done": 0}) == []
    assert not api.patches()


def test_pod_gone_between_list_and_patch_is_skipped(api) -> None:
    api.pod("w-gone")
    api.pod("w-busy")
    api.patch_status["w-gone"] = 404
    done = annotator(api).sync({"w-gone": 2, "w-busy": 1})
    assert [p.pod for p in done] == ["w-busy"]


def test_forbidden_patch_raises_for_the_caller_to_count(api) -> None:
    from kubernetes.client.exceptions import ApiException

    api.pod("w-busy")
    api.patch_status["w-busy"] = 403
    with pytest.raises(ApiException) as e:
        annotator(api).sync({"w-busy": 2})
    assert e.value.status == 403


# -- one autoscaler iteration in Kubernetes mode, through loop.py --------------------------------
class PodSignalsStub:
    """The DB/broker side of PodSignals, fixed; the pods come from the fake API server."""

    def __init__(self, ann: PodAnnotator, reports: dict[str, NodeReport], queues: list[str]):
        self.annotator, self.reports, self.queues = ann, reports, queues
        self.last_pods: list[WorkerPod] = []

    def read(self, lookahead):
        self.last_pods = self.annotator.pods()
        views = worker_views(self.last_pods, self.reports, self.queues)
        return Snapshot({q: QueueSnapshot(q, queued=0, running=sum(v.active or 0 for v in views[q]),
                                          broker_depth=0, forecast=0, workers=tuple(views[q]))
                         for q in self.queues})

    def close(self):
        pass


def kube_scaler(spec, api: FakeApiServer, reports: dict[str, NodeReport]) -> Autoscaler:
    ann = annotator(api)
    signals = PodSignalsStub(ann, reports, list(spec.queues))
    metrics = AutoscalerMetrics(CollectorRegistry())
    clock = iter(float(i) for i in range(10_000))
    return Autoscaler(spec, signals, KedaActuator(), Layout(spec.data_path), metrics,  # type: ignore[arg-type]
                      clock=lambda: next(clock), after_iteration=DeletionCostHook(signals, ann, metrics))


def test_an_iteration_exports_desired_workers_and_protects_busy_pods(spec, api) -> None:
    api.pod("airflow-worker-a")
    api.pod("airflow-worker-b", "300")
    api.pod("airflow-q-reports-worker-c", queue="reports")
    reports = {"airflow-worker-a": report("default", active=2), "airflow-worker-b": report("default"),
               "airflow-q-reports-worker-c": report("reports", active=1)}
    scaler = kube_scaler(spec, api, reports)
    decisions = scaler.iterate()
    m = scaler.metrics.registry
    for q in spec.queues:
        # KEDA's input: the decision is exported per queue, and nothing else acts on it here.
        assert m.get_sample_value("airscale_autoscaler_desired_workers", {"queue": q}) == decisions[q].desired
    assert m.get_sample_value("airscale_autoscaler_actual_workers", {"queue": "default"}) == 2
    assert {r["path"].rsplit("/", 1)[-1]: r["body"]["metadata"]["annotations"][DELETION_COST]
            for r in api.patches()} == {"airflow-worker-a": "200", "airflow-worker-b": "0",
                                        "airflow-q-reports-worker-c": "100"}
    assert m.get_sample_value("airscale_autoscaler_deletion_cost_patches_total") == 3


def test_a_failed_write_is_counted_and_does_not_fail_the_iteration(spec, api) -> None:
    api.pod("airflow-worker-a")
    api.patch_status["airflow-worker-a"] = 403  # e.g. the Role was not applied
    scaler = kube_scaler(spec, api, {"airflow-worker-a": report("default", active=2)})
    scaler.iterate()
    m = scaler.metrics.registry
    assert m.get_sample_value("airscale_autoscaler_deletion_cost_errors_total") == 1
    assert m.get_sample_value("airscale_autoscaler_desired_workers", {"queue": "default"}) is not None


def test_build_wires_pod_signals_and_the_hook(spec, api, monkeypatch) -> None:
    """in_cluster.build: the real PodSignals lists pods through the client and asks Celery by
    node name celery@<pod>; here Celery's answer is stubbed, the pod listing is real HTTP."""
    api.pod("airflow-worker-a")
    api.pod("airflow-worker-b")
    scaler = in_cluster.build(spec, env=ENV, core_v1=core_v1(api.url),
                              metrics=AutoscalerMetrics(CollectorRegistry()))
    try:
        asked: list[list[str]] = []

        def inspect(nodes):
            asked.append(nodes)
            return {"celery@airflow-worker-a": report("default", active=1)}

        monkeypatch.setattr(scaler.signals, "inspect", inspect)
        views = scaler.signals.workers()
        assert asked == [["celery@airflow-worker-a", "celery@airflow-worker-b"]]
        assert [(v.name, v.state) for v in views["default"]] == [
            ("airflow-worker-a", WorkerState.SERVING), ("airflow-worker-b", WorkerState.STARTING)]
        assert isinstance(scaler.after_iteration, DeletionCostHook)
        assert isinstance(scaler.actuator, KedaActuator)
        scaler.after_iteration(Snapshot({"default": QueueSnapshot(
            "default", 0, 1, 0, 0, (WorkerView("airflow-worker-a", "default", 1, WorkerState.SERVING, 1, 0),))}))
        assert [r["body"] for r in api.patches()] == [{"metadata": {"annotations": {DELETION_COST: "100"}}}]
    finally:
        scaler.signals.close()


# -- the command the rendered Deployment runs ---------------------------------------------------
@pytest.mark.parametrize(
    "env,message",
    [
        pytest.param({}, "needs AIRSCALE_DATABASE_URL", id="no-environment"),
        pytest.param(ENV, "runs only inside a pod", id="no-service-account"),
    ],
)
def test_autoscale_kubernetes_outside_a_pod_names_the_fix(spec_dir, monkeypatch, env, message) -> None:
    from typer.testing import CliRunner

    from airscale.cli import app

    for name in [*ENV, "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = write_spec(spec_dir, {"cluster": {"data_dir": str(spec_dir / "data")}})
    result = CliRunner().invoke(app, ["autoscale", "--kubernetes", "--once", "-s", str(path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, AirscaleError) and message in result.exception.problem
