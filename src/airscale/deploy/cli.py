"""`airscale render ...`: hand the spec to engines that run it elsewhere (Kubernetes)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from airscale.spec import load_spec
from airscale.spec.cli_options import OldOutDirOption, OutDirOption, SpecOption, out_dir

render_app = typer.Typer(
    help="Render the spec for other platforms (Kubernetes).\n\n"
    "Example: airscale render k8s -d k8s/ --spec airscale.yaml",
    no_args_is_help=True,
)
out = Console()


@render_app.command("k8s")
def render_k8s(
    output: Path = OutDirOption,
    spec: Path = SpecOption,
    executor: str = typer.Option("celery", "--executor", "-e", help="celery (Celery workers scaled by KEDA) or kubernetes (a pod per task)."),
    old_output: Path = OldOutDirOption,
) -> None:
    """Write Helm values for the official Airflow chart, KEDA ScaledObjects, airscale's
    exporter and autoscaler with RBAC, alert rules, a dashboard and NetworkPolicies; never a
    secret value (SECRETS.md lists the Secrets to create).

    Example: airscale render k8s -d deploy/ --spec examples/airscale.yaml
    """
    from airscale.deploy import render

    output = out_dir(output, old_output)

    b = render.bundle(load_spec(spec), executor.lower())
    paths = render.write(b, output)
    out.print(f"wrote {len(paths)} files to {output}: {', '.join(p.name for p in paths)}", markup=False)
    out.print(f"next: read {output / render.README} (install order) and {output / render.SECRETS_DOC}", markup=False)


worker_app = typer.Typer(
    help="Celery workers on other hosts.\n\n"
    "Example: airscale worker join --queue default --cluster-host 192.0.2.10 --secrets secrets.json",
    no_args_is_help=True,
)


@worker_app.command("join")
def worker_join(
    queue: str = typer.Option(..., "--queue", "-q", help="Queue this worker consumes (one of the spec's queues)."),
    cluster_host: str = typer.Option(..., "--cluster-host", help="Address at which this host reaches the cluster."),
    spec: Path = SpecOption,
    secrets: Path = typer.Option(None, "--secrets", help="Copy of the cluster's secrets.json (mode 0600); "
                                 "default: <data_dir>/secrets.json of the spec."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where this worker keeps its config and task logs; "
                                  "default: <data_dir>/join-<queue>."),
    advertise_host: str = typer.Option(None, "--advertise-host", help="Address the cluster reaches this host at "
                                       "(task logs are fetched from it); default: this host's FQDN."),
    name: str = typer.Option(None, "--name", help="Celery node name prefix; default worker-<queue>-<hostname>."),
) -> None:
    """Run a Celery worker for one queue on this host, against a cluster started elsewhere
    with `airscale up` (its cluster.listen_host must be reachable from here). Runs in the
    foreground; SIGTERM finishes the running tasks first.

    Example: airscale worker join --spec airscale.yaml --queue default --cluster-host 192.0.2.10 --secrets secrets.json
    """
    import socket

    from airscale.deploy import join

    s = load_spec(spec)
    join.check_joinable(s, queue, cluster_host)
    secrets_file = secrets or (s.data_path / "secrets.json")
    sec = join.load_secrets(secrets_file)
    join.check_reachable(s, sec, cluster_host)
    p = join.plan(s, sec, queue, cluster_host, data_dir or (s.data_path / f"join-{queue}"),
                  advertise_host or socket.getfqdn(), name)
    join.write(p)
    out.print(f"joining cluster {s.cluster.name!r} at {cluster_host}: Celery worker {p.name} on queue {queue!r} "
              f"(concurrency {s.queues[queue].concurrency}); logs served as {p.env['AIRSCALE_HOSTNAME']}", markup=False)
    join.exec_worker(p)
