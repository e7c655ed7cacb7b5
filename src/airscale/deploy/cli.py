"""`airscale render ...`: hand the spec to engines that run it elsewhere (Kubernetes)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from airscale.spec import load_spec

render_app = typer.Typer(help="Render the spec for other platforms (Kubernetes).", no_args_is_help=True)
out = Console()


@render_app.command("k8s")
def render_k8s(
    output: Path = typer.Option(..., "--output", "-o", help="Folder the files are written to."),
    spec: Path = typer.Option(Path("airscale.yaml"), "--spec", "-s", envvar="AIRSCALE_SPEC", help="The cluster's spec file."),
    executor: str = typer.Option("celery", "--executor", "-e", help="celery (Celery workers scaled by KEDA) or kubernetes (a pod per task)."),
) -> None:
    """Write Helm values for the official Airflow chart, KEDA ScaledObjects, airscale's
    exporter and autoscaler with RBAC, alert rules, a dashboard and NetworkPolicies; never a
    secret value (SECRETS.md lists the Secrets to create).

    Example: airscale render k8s -o deploy/ --spec examples/airscale.yaml
    """
    from airscale.deploy import render

    b = render.bundle(load_spec(spec), executor.lower())
    paths = render.write(b, output)
    out.print(f"wrote {len(paths)} files to {output}: {', '.join(p.name for p in paths)}")
    out.print(f"next: read {output / render.README} (install order) and {output / render.SECRETS_DOC}")
