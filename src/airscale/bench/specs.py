"""The benchmark's two clusters as specs: stock and tuned (airscale's plan), from one config.

Both clusters are identical but for the tuning plan: same DAG files, one scheduler, one Celery
worker with the same concurrency, same machine, same run. The stock cluster keeps Airflow's
defaults except what airscale needs to run at all (ports, secrets, executor, paths): it is
built as airscale would build it, and then every setting airscale derives that has an Airflow
default is set back to that default (`stock.stock_overrides`). Both send statsd to the bench.

Everything here is a value computed from `BenchConfig` (no cluster is touched); only
`write_dags` writes files: the scenario DAGs into each cluster's own DAGs folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airscale.bench import profile as prof
from airscale.bench import statsd
from airscale.bench.scenarios import WARMUP, Scenario, dag_file
from airscale.bench.stock import stock_overrides
from airscale.spec import Spec
from airscale.spec.workload import WorkloadProfile

VARIANTS = ("stock", "tuned")

# The bench's own workload, as an operator would describe it: short trivial tasks on one
# 2-core worker of 8 slots, a latency goal of a quarter second, up to 1,000 small DAG files
# (the parse scenario) whose parse costs 0.2-0.3 s each in the dag-processor (measured by the
# bench itself: seconds per file in the parse table of the report).
BENCH_PROFILE = WorkloadProfile(
    dags=1000, tasks_per_day=50_000, peak_concurrent_tasks=8, typical_task_seconds=1.0,
    burstiness=10, latency_goal_seconds=0.25, parse_seconds_per_dag=0.3,
)


@dataclass
class BenchConfig:
    scenarios: tuple[Scenario, ...]
    rounds: int
    root: Path  # data dirs and DAG files live under it
    ports: dict[str, int] = field(default_factory=lambda: {"stock": 30800, "tuned": 30900})
    concurrency: int = 8
    idle_seconds: float = 20.0  # quiet period over which scheduler CPU is measured
    run_timeout: float = 900.0
    profile: WorkloadProfile = field(default_factory=lambda: BENCH_PROFILE)
    parse_files: tuple[int, ...] = ()  # parse a pass of this many DAG files on each cluster
    load: prof.Profile | None = None  # the many-DAG profile compressed in time, None: skip
    parse_timeout: float = 900.0
    density: bool = True  # memory of a worker with every slot running a sleeping task
    folder_quiet_s: float = 60.0  # after the largest pass: the dag-processor's CPU over unchanged files
    folder_edits: int = 3  # then this many edits of one file, each timed to its new version
    many_first: str = "stock"  # which cluster takes its many-DAG turn first


def bench_spec(cfg: BenchConfig, variant: str) -> Spec:
    spec = _cluster_spec(cfg, variant)
    overrides: dict[str, dict] = {}
    if variant == "stock":
        overrides, _ = stock_overrides(_derived(spec))
    # Both send statsd to the bench (scheduler loop duration, parse time), set after the stock
    # overrides, which would put statsd_on back to its default (off).
    overrides = {**overrides, "metrics": statsd.settings(statsd_port(spec))}
    return spec.model_copy(update={"airflow_config": overrides})


def _cluster_spec(cfg: BenchConfig, variant: str) -> Spec:
    """The variant's cluster before the bench's own Airflow overrides."""
    data: dict = {
        "cluster": {"name": f"bench-{variant}", "data_dir": str(cfg.root / variant),
                    "base_port": cfg.ports[variant]},
        "schedulers": {"count": 1},
        "queues": {"default": {"min_workers": 1, "max_workers": 1, "concurrency": cfg.concurrency}},
        # A DAGs folder per cluster: the many-DAG scenarios add files to one cluster at a time.
        "dags_folder": str(dags_folder(cfg, variant)),
    }
    # Same components on both: no autoscaler (same number of workers), no monitoring stack
    # (its exporters would compete for the CPU being measured).
    if "autoscaling" in Spec.model_fields:
        data["autoscaling"] = {"enabled": False}
    if "monitoring" in Spec.model_fields:
        data["monitoring"] = {"enabled": False}
    data["tuning"] = (
        {"enabled": True, "workload": cfg.profile.model_dump()} if variant == "tuned" else {"enabled": False}
    )
    if variant == "stock":
        # Airflow's default result backend is the metadata database; airscale's is Redis.
        data["broker"] = {"result_backend": "database"}
    return Spec.model_validate(data).model_copy(update={"base_dir": cfg.root})


def statsd_port(spec: Spec) -> int:
    """The cluster's own statsd port (its exporter's, which the bench does not run)."""

    return spec.ports.statsd


def dags_folder(cfg: BenchConfig, variant: str) -> Path:
    return cfg.root / f"dags-{variant}"


def _derived(spec: Spec) -> dict[str, dict]:
    """The settings airscale would write for `spec` (secrets are placeholders: only keys matter)."""
    from airscale.assembly import CAPABILITIES
    from airscale.runtime.airflow_config import merged_settings
    from airscale.runtime.layout import Layout
    from airscale.runtime.secrets import Secrets

    return merged_settings(spec, Layout(spec.data_path), Secrets.generate(), CAPABILITIES)


def stock_differences(cfg: BenchConfig) -> tuple[dict[str, dict], list[str]]:
    """What the stock cluster sets back to Airflow's defaults, and what it could not."""
    return stock_overrides(_derived(_cluster_spec(cfg, "stock")))


def density_scenario(cfg: BenchConfig) -> Scenario:
    """As many sleeping tasks as the worker has slots."""
    return Scenario("density", "sleep", cfg.concurrency)


def write_dags(cfg: BenchConfig) -> None:
    for v in VARIANTS:
        folder = dags_folder(cfg, v)
        folder.mkdir(parents=True, exist_ok=True)
        for s in (WARMUP, *cfg.scenarios, *((density_scenario(cfg),) if cfg.density else ())):
            (folder / f"{s.dag_id}.py").write_text(dag_file(s))
