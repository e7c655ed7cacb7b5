"""What the rendering must say: the chart runs what the spec describes, KEDA scales the worker
Deployment on airscale's metric with the SQL fallback, scale-down is safe, the autoscaler has
only the rights it needs, and no secret value ever reaches a rendered file."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from airscale.cli import app
from airscale.deploy import k8s, render
from airscale.errors import AirscaleError
from airscale.runtime.airflow_config import broker_url, database_url
from airscale.runtime.secrets import Secrets, write_private
from airscale.spec import Spec, parse_spec
from .deploy_cases import RENDERINGS, SPECS, bundles, spec_of


def kinds(b: render.Bundle, kind: str) -> list[dict]:
    return [o for o in b.objects() if o["kind"] == kind]


def named(b: render.Bundle, kind: str, name: str) -> dict:
    [obj] = [o for o in kinds(b, kind) if o["metadata"]["name"] == name]
    return obj


# -- Helm values -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in SPECS])
def test_celery_values_follow_the_spec(name: str) -> None:
    spec = spec_of(name)
    v = bundles()[(name, "celery")].values
    ws = k8s.worker_sets(spec)[0]
    assert v["executor"] == "CeleryExecutor"
    assert v["scheduler"]["replicas"] == spec.schedulers.count
    assert v["pgbouncer"]["enabled"] is True
    # Airflow's statsd goes to airscale's exporter, not the chart's statsd-exporter.
    assert v["statsd"]["enabled"] is False and v["config"]["metrics"]["statsd_on"] == "True"
    assert v["config"]["metrics"]["statsd_host"] == f"{k8s.EXPORTER}.{spec.kubernetes.namespace}.svc"
    assert v["workers"]["resources"] == spec.kubernetes.worker_resources.as_k8s()
    # helm upgrade resets the live count to this: only the maximum cannot take workers away.
    assert v["workers"]["replicas"] == ws.max_workers
    default = next(iter(spec.queues))
    # The main release's workers consume the default queue only; the others have their own release.
    assert f"--queues {default} " in v["workers"]["args"][-1]
    assert v["workers"]["labels"] == {k8s.QUEUE_LABEL: default}
    assert v["config"]["celery"]["worker_concurrency"] == spec.queues[default].concurrency == ws.concurrency
    assert v["workers"]["persistence"]["enabled"] is False, "StatefulSets ignore pod-deletion-cost"
    assert v["workers"]["keda"]["enabled"] is False, "airscale renders its own ScaledObject"
    assert v["airflowVersion"] == "3.3.2"
    assert v["webserver"]["defaultUser"]["enabled"] is False, "the chart's default user's password is 'admin'"
    assert v["apiServer"]["defaultUser"]["enabled"] is False
    # As many api-server pods as api_server.count (2 in the scale profile), one allowed down at a time.
    assert v["apiServer"]["replicas"] == spec.api_server.count
    assert v["apiServer"]["podDisruptionBudget"]["enabled"] is (spec.api_server.count > 1)
    assert v["postgresql"]["enabled"] is False and v["data"]["metadataSecretName"] == spec.kubernetes.secrets.metadata


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in SPECS])
def test_worker_grace_period_covers_the_drain(name: str) -> None:
    spec = spec_of(name)
    workers = bundles()[(name, "celery")].values["workers"]
    assert workers["terminationGracePeriodSeconds"] > spec.workers.drain_timeout
    hook = " ".join(workers["containerLifecycleHooks"]["preStop"]["exec"]["command"])
    assert f"--timeout {spec.workers.drain_timeout}" in hook
    # The hook addresses the worker by the node name it is started with, which is also the
    # one the chart's liveness probe pings (celery@$(hostname)).
    assert '--node "celery@${HOSTNAME}"' in hook
    assert '--celery-hostname "celery@${HOSTNAME}"' in workers["args"][-1]
    assert "livenessProbe" not in workers, "the chart's own probe must keep working"
    mount = workers["extraVolumeMounts"][0]["mountPath"]
    assert f"{mount}/drain_hook.py" in hook
    cm = named(bundles()[(name, "celery")], "ConfigMap", k8s.DRAIN_HOOK_CONFIGMAP)
    compile(cm["data"]["drain_hook.py"], "drain_hook.py", "exec")  # ships as valid Python


def test_kubernetes_executor_variant_has_no_celery_parts() -> None:
    b = bundles()[("two-queues", "kubernetes")]
    assert b.values["executor"] == "KubernetesExecutor"
    assert b.values["redis"]["enabled"] is False
    assert "brokerUrlSecretName" not in b.values["data"]
    assert "celery" not in b.values["config"]
    assert not kinds(b, "ScaledObject") and not kinds(b, "Role")
    assert [d["metadata"]["name"] for d in kinds(b, "Deployment")] == [k8s.EXPORTER, k8s.POSTGRES_EXPORTER]
    assert b.values["workers"]["resources"] == spec_of("two-queues").kubernetes.worker_resources.as_k8s()


def test_dev_profile_cannot_render_celery() -> None:
    spec = parse_spec("cluster: {profile: dev}", Path("/tmp/x/airscale.yaml"))
    with pytest.raises(AirscaleError, match="--executor kubernetes"):
        render.bundle(spec, "celery")
    assert render.bundle(spec, "kubernetes").values["executor"] == "KubernetesExecutor"


def test_external_broker_turns_the_charts_redis_off() -> None:
    b = bundles()[("external-db-and-broker", "celery")]
    assert b.values["redis"] == {"enabled": False}
    assert b.values["data"] == {"metadataSecretName": "prod-db", "brokerUrlSecretName": "prod-redis"}
    assert not [p for p in kinds(b, "NetworkPolicy") if p["metadata"]["name"] == "airscale-to-redis"]


# -- one worker-only release per queue ---------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in SPECS])
def test_every_queue_but_the_first_gets_a_worker_only_release(name: str) -> None:
    spec = spec_of(name)
    b = bundles()[(name, "celery")]
    others = list(spec.queues)[1:]
    assert sorted(b.worker_values) == sorted(f"values-{q}.yaml" for q in others)
    main = b.values
    for q in others:
        v = b.worker_values[f"values-{q}.yaml"]
        qs = spec.queues[q]
        # Everything but the workers runs once, in the main release.
        for component in ("scheduler", "triggerer", "dagProcessor", "webserver", "postgresql", "redis",
                          "pgbouncer", "statsd", "migrateDatabaseJob"):
            assert v[component]["enabled"] is False, component
        assert v["apiServer"]["replicas"] == 0, "this chart release has no apiServer.enabled"
        assert v["apiServer"]["defaultUser"]["enabled"] is False and v["webserver"]["defaultUser"]["enabled"] is False
        # The main release's broker and metadata DB (through its PgBouncer), by the same Secrets.
        assert v["data"] == main["data"]
        for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName", "images", "executor"):
            assert v[key] == main[key], key
        w = v["workers"]
        assert f"--queues {q} --concurrency {qs.concurrency} " in w["args"][-1]
        assert w["replicas"] == qs.max_workers and w["labels"] == {k8s.QUEUE_LABEL: q}
        assert v["config"]["celery"]["worker_concurrency"] == qs.concurrency
        for key in ("persistence", "keda", "containerLifecycleHooks", "terminationGracePeriodSeconds", "resources"):
            assert w[key] == main["workers"][key], key
        api = f"http://{spec.kubernetes.release}-api-server:8080/execution/"
        assert v["config"]["core"]["execution_api_server_url"] == api
        assert {"name": "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "value": api} in w["env"]
        assert v["config"]["metrics"] == main["config"]["metrics"], "one exporter receives every release's statsd"


def test_kubernetes_executor_renders_no_worker_release() -> None:
    assert bundles()[("two-queues", "kubernetes")].worker_values == {}


def test_too_long_queue_release_name_names_the_fix() -> None:
    spec = parse_spec("queues: {default: {}, %s: {}}\nkubernetes: {release: %s}" % ("q" * 31, "r" * 30),
                      Path("/tmp/x/airscale.yaml"))
    with pytest.raises(AirscaleError) as e:
        render.bundle(spec)
    assert "53" in e.value.problem and f"queues.{'q' * 31}" in e.value.fix


# -- KEDA -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in SPECS])
def test_each_queue_has_its_scaled_object_on_its_desired_workers(name: str) -> None:
    spec = spec_of(name)
    b = bundles()[(name, "celery")]
    sos = kinds(b, "ScaledObject")
    assert len(sos) == len(spec.queues)
    release = spec.kubernetes.release
    for (q, qs), so, i in zip(spec.queues.items(), sos, range(len(sos)), strict=True):
        s = so["spec"]
        deployment = f"{release}-worker" if i == 0 else f"{release}-q-{q}-worker"
        assert s["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}
        assert s["maxReplicaCount"] == qs.max_workers
        assert s["minReplicaCount"] == (0 if spec.autoscaling.scale_to_zero else qs.min_workers)
        prom, sql = s["triggers"]
        assert prom["type"] == "prometheus" and prom["metadata"]["threshold"] == "1"
        # This queue's desired count only, and the SQL fallback counts this queue's tasks only.
        assert prom["metadata"]["query"] == f'sum({k8s.DESIRED_METRIC}{{queue=~"{q}"}})'
        assert sql["metadata"]["query"].endswith(f"AND queue IN ('{q}')")
        assert f"/ {qs.concurrency})" in sql["metadata"]["query"]
        assert prom["metadata"]["serverAddress"] == spec.kubernetes.prometheus_url
        assert sql["type"] == "postgresql" and "FROM task_instance" in sql["metadata"]["query"]
        auth = named(b, "TriggerAuthentication", sql["authenticationRef"]["name"])
        assert auth["spec"]["secretTargetRef"] == [
            {"parameter": "connection", "name": spec.kubernetes.secrets.metadata, "key": "connection"}]
        down = s["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        window = spec.autoscaling.stabilization_window
        # Pods are deleted on scale-down there: the HPA's window unless the spec sets one.
        assert down["stabilizationWindowSeconds"] == round(k8s.keda.HPA_WINDOW_S if window is None else window)


@pytest.mark.parametrize(
    "queues,query",
    [
        pytest.param({"default": 1}, 'sum(airscale_autoscaler_desired_workers{queue=~"default"})', id="one"),
        pytest.param({"a": 1, "etl-x": 1}, 'sum(airscale_autoscaler_desired_workers{queue=~"a|etl-x"})', id="two"),
    ],
)
def test_desired_workers_query(queues: dict, query: str) -> None:
    ws = k8s.WorkerSet("w", "w", tuple(queues), 8, 1, 2, "airflow", True)
    assert k8s.desired_workers_query(ws) == query


# -- airscale's Deployments and RBAC ----------------------------------------------------------
def test_autoscaler_role_is_least_privilege() -> None:
    b = bundles()[("two-queues", "celery")]
    role = named(b, "Role", k8s.AUTOSCALER)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]}]
    binding = named(b, "RoleBinding", k8s.AUTOSCALER)
    assert binding["roleRef"]["kind"] == "Role"  # not a ClusterRole: one namespace only
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": k8s.AUTOSCALER, "namespace": "airflow"}]
    dep = named(b, "Deployment", k8s.AUTOSCALER)
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == k8s.AUTOSCALER and pod["automountServiceAccountToken"] is True
    assert dep["spec"]["strategy"] == {"type": "Recreate"}, "two autoscalers at once would fight"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    # Every queue's workers, over both releases; the pod's queue comes from its label.
    assert env["AIRSCALE_WORKER_SELECTOR"]["value"] == (
        "tier=airflow,component=worker,release in (airflow,airflow-q-reports)")
    assert pod["containers"][0]["command"][:3] == ["airscale", "autoscale", "--kubernetes"]


def test_exporter_gets_no_api_token_and_no_role() -> None:
    b = bundles()[("two-queues", "celery")]
    assert named(b, "ServiceAccount", k8s.EXPORTER)["automountServiceAccountToken"] is False
    pod = named(b, "Deployment", k8s.EXPORTER)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert [r["metadata"]["name"] for r in kinds(b, "Role")] == [k8s.AUTOSCALER]


@pytest.mark.parametrize("name,executor", [pytest.param(n, e, id=f"{n}-{e}") for n, e in RENDERINGS])
def test_pods_read_secrets_only_by_reference(name: str, executor: str) -> None:
    spec = spec_of(name)
    for dep in kinds(bundles()[(name, executor)], "Deployment"):
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        for e in c["env"]:
            if e["name"].endswith("_URL"):
                assert set(e) == {"name", "valueFrom"} and "secretKeyRef" in e["valueFrom"]
    cm = named(bundles()[(name, executor)], "ConfigMap", k8s.SPEC_CONFIGMAP)
    pod_spec = yaml.safe_load(cm["data"]["airscale.yaml"])
    Spec.model_validate(pod_spec)  # the pods load it with the same loader
    assert pod_spec["database"]["url"] is None and pod_spec["broker"]["url"] is None
    assert pod_spec["cluster"]["listen_host"] == "0.0.0.0"  # reachable by Prometheus in the pod
    assert pod_spec["queues"] == {q: v.model_dump(mode="json") for q, v in spec.queues.items()}


def test_network_policies_open_only_the_needed_paths() -> None:
    b = bundles()[("two-queues", "celery")]
    pols = {p["metadata"]["name"]: p["spec"] for p in kinds(b, "NetworkPolicy")}
    assert set(pols) == {"airscale-exporter", "airscale-autoscaler", "airscale-postgres-exporter",
                         "airscale-redis-exporter", "airscale-to-pgbouncer", "airscale-to-redis", "airscale-statsd",
                         "airscale-execution-api", "airscale-queue-worker-logs"}
    for p in pols.values():
        assert p["policyTypes"] == ["Ingress"] and len(p["ingress"]) == 1
    pg_peers = pols["airscale-to-pgbouncer"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in pg_peers
    # The queue release's workers reach the main release's PgBouncer, Redis and statsd ...
    queue_workers = {"podSelector": {"matchLabels": {"tier": "airflow", "component": "worker"},
                                     "matchExpressions": [{"key": "release", "operator": "In",
                                                           "values": ["airflow-q-reports"]}]}}
    assert queue_workers in pg_peers and queue_workers in pols["airscale-to-redis"]["ingress"][0]["from"]
    # ... every Airflow pod reaches the exporter's statsd port and the Execution API (the chart's
    # api-server policy admits none) ...
    statsd = pols["airscale-statsd"]
    assert statsd["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == k8s.EXPORTER
    assert statsd["ingress"][0]["ports"] == [{"protocol": "UDP", "port": 9125}]
    assert statsd["ingress"][0]["from"] == pols["airscale-execution-api"]["ingress"][0]["from"]
    api = pols["airscale-execution-api"]
    assert api["podSelector"]["matchLabels"] == {"tier": "airflow", "component": "api-server", "release": "airflow"}
    peers = api["ingress"][0]["from"][0]["podSelector"]
    assert peers["matchExpressions"][0]["values"] == ["airflow", "airflow-q-reports"]
    # ... and the main api-server fetches task logs from them.
    logs = pols["airscale-queue-worker-logs"]
    assert logs["podSelector"] == queue_workers["podSelector"]
    assert logs["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8793}]
    assert pols["airscale-to-pgbouncer"]["podSelector"]["matchLabels"] == {
        "tier": "airflow", "component": "pgbouncer", "release": "airflow"}
    assert b.values["networkPolicies"]["enabled"] is True


# -- monitoring --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,executor", [pytest.param(n, e, id=f"{n}-{e}") for n, e in RENDERINGS])
def test_monitoring_objects_are_labelled_for_the_operator_and_grafana(name: str, executor: str) -> None:
    b = bundles()[(name, executor)]
    [rule] = kinds(b, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "NoHealthyScheduler" in alerts
    assert ("AutoscalerSignalMissing" in alerts) is (executor == "celery")
    dash = named(b, "ConfigMap", k8s.DASHBOARDS_CONFIGMAP)
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    monitors = kinds(b, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == set(k8s.metrics_services(executor))
    assert all(m["metadata"]["labels"]["release"] == "kube-prometheus-stack" for m in monitors)


# -- secrets ------------------------------------------------------------------------------------
def test_no_rendered_file_contains_a_secret_value(tmp_path: Path) -> None:
    """Generate a real secrets file, build a spec whose URLs embed those secrets, render through
    the CLI, and look for every secret value in every written file."""
    secrets = Secrets.generate()
    write_private(tmp_path / "secrets.json", json.dumps(asdict(secrets)))
    base = parse_spec(SPECS["two-queues"], tmp_path / "airscale.yaml")
    spec_text = SPECS["two-queues"] + (
        f'database: {{url: "{database_url(base, secrets)}"}}\n'
        f'broker: {{url: "{broker_url(base, secrets)}"}}\n'
        f"airflow_config:\n  core: {{fernet_key: \"{secrets.fernet_key}\"}}\n"
        f"  api_auth: {{jwt_secret: \"{secrets.jwt_secret}\"}}\n"
        f"  smtp: {{smtp_password: \"{secrets.admin_password}\", smtp_host: mail.example}}\n"
    )
    spec_file = tmp_path / "airscale.yaml"
    spec_file.write_text(spec_text)
    leaked_into_spec = [v for v in secrets.values() if v in spec_file.read_text()]
    assert len(leaked_into_spec) >= 5, "the test spec must carry secret values for the test to mean anything"
    for executor in ("celery", "kubernetes"):
        out = tmp_path / f"out-{executor}"
        result = CliRunner().invoke(app, ["render", "k8s", "-d", str(out), "-s", str(spec_file), "-e", executor])
        assert result.exit_code == 0, result.output
        files = sorted(out.iterdir())
        assert len(files) >= 6
        for f in files:
            text = f.read_text()
            for value in secrets.values():
                assert value not in text, f"{f.name} contains a secret value"
        objs = [o for f in files if f.suffix == ".yaml" and not f.name.startswith("values")
                for o in yaml.safe_load_all(f.read_text())]
        assert "Secret" not in {o["kind"] for o in objs}
        secrets_doc = (out / render.SECRETS_DOC).read_text()
        assert "smtp.smtp_password" in secrets_doc and "core.fernet_key" in secrets_doc


def test_safe_airflow_config_keeps_plain_settings() -> None:
    kept, dropped = k8s.safe_airflow_config(spec_of("external-db-and-broker"))
    assert kept == {"core": {"parallelism": 64}, "smtp": {"smtp_host": "mail.example"}}
    assert dropped == ["smtp.smtp_password"]


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_writes_the_documented_files(tmp_path: Path) -> None:
    spec_file = tmp_path / "airscale.yaml"
    spec_file.write_text(SPECS["two-queues"])
    result = CliRunner().invoke(app, ["render", "k8s", "-d", str(tmp_path / "out"), "-s", str(spec_file)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {render.VALUES, "values-reports.yaml", render.KEDA, render.AIRSCALE, render.MONITORING,
                     render.NETWORK, render.SECRETS_DOC, render.README}
    # What is written is exactly what was rendered (the `|` block style changes nothing).
    b = render.bundle(parse_spec(SPECS["two-queues"], spec_file))
    for name, objs in b.manifests.items():
        assert list(yaml.safe_load_all((tmp_path / "out" / name).read_text())) == objs, name
    for name, values in b.values_files().items():
        assert yaml.safe_load((tmp_path / "out" / name).read_text()) == values, name
    readme = (tmp_path / "out" / render.README).read_text()
    assert "helm upgrade --install airflow apache-airflow/airflow -n airflow -f values.yaml" in readme
    assert "helm upgrade --install airflow-q-reports apache-airflow/airflow -n airflow -f values-reports.yaml" in readme
    assert k8s.DELETION_COST in readme


@pytest.mark.parametrize(
    "args,message",
    [
        pytest.param(["-e", "local"], "unknown executor 'local'", id="bad-executor"),
        pytest.param(["-s", "/nonexistent/airscale.yaml"], "spec file not found", id="missing-spec"),
    ],
)
def test_cli_errors_name_the_fix(tmp_path: Path, args: list[str], message: str) -> None:
    spec_file = tmp_path / "airscale.yaml"
    spec_file.write_text("{}")
    base = ["render", "k8s", "-d", str(tmp_path / "out"), "-s", str(spec_file)]
    result = CliRunner().invoke(app, base + args)
    assert result.exit_code != 0
    assert isinstance(result.exception, AirscaleError) and message in result.exception.problem


@pytest.mark.parametrize(
    "text,field",
    [
        pytest.param("kubernetes: {namespace: Airflow_Prod}", "kubernetes.namespace", id="bad-namespace"),
        pytest.param("kubernetes: {worker_resources: {memory_limit: 4GB}}",
                     "kubernetes.worker_resources.memory_limit", id="bad-quantity"),
        pytest.param("kubernetes: {secrets: {metadata: My_Secret}}", "kubernetes.secrets.metadata", id="bad-secret-name"),
        pytest.param("kubernetes: {replicas: 3}", "kubernetes.replicas", id="unknown-field"),
    ],
)
def test_bad_kubernetes_section_names_the_field(text: str, field: str) -> None:
    with pytest.raises(AirscaleError) as e:
        parse_spec(text, Path("/tmp/x/airscale.yaml"))
    assert field in e.value.problem


def test_alert_receivers_stay_out_of_rendered_files(tmp_path: Path) -> None:
    """Receivers carry webhook URLs and SMTP passwords: they go to Alertmanager's Secret only."""
    if "monitoring" not in Spec.model_fields:
        pytest.skip("the spec has no monitoring section yet")
    slack, smtp_pw, hook = "https://hooks.slack.example/T0/B0/sekrit-1", "smtp-sekrit-2", "https://hook.example/sekrit-3"
    text = SPECS["two-queues"] + f"""
monitoring:
  receivers:
    - name: oncall
      webhook_urls: ["{hook}"]
      slack: {{api_url: "{slack}"}}
      email: {{to: a@example.com, sender: b@example.com, smarthost: "mail.example:587",
               auth_username: u, auth_password: "{smtp_pw}"}}
"""
    spec_file = tmp_path / "airscale.yaml"
    spec_file.write_text(text)
    b = render.bundle(parse_spec(text, spec_file))
    render.write(b, tmp_path / "out")
    for f in (tmp_path / "out").iterdir():
        for value in (slack, smtp_pw, hook):
            assert value not in f.read_text(), f"{f.name} leaks a receiver secret"
    cm = named(b, "ConfigMap", k8s.SPEC_CONFIGMAP)
    Spec.model_validate(yaml.safe_load(cm["data"]["airscale.yaml"]))
