"""What one `airscale bench` run found, as `report` and the CLI read it.

`BenchResult` is the hand-over between running the bench (`playback.run_bench`) and writing
about it (`report`): the figures of every run, parse pass and profile, the idle schedulers,
the settings each cluster ran with, and what the clusters' own logs say airscale's
accelerators did (`Accelerators`, read before the clusters and their logs are removed).
Nothing here touches a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airscale.bench import metrics
from airscale.bench import profile as prof
from airscale.bench.specs import BenchConfig


@dataclass(frozen=True)
class Accelerators:
    """What a cluster's own logs say airscale's accelerators did (airscale.runtime.airflow_entry)."""

    pacing: bool  # a scheduler logged that it paces its idle sleep
    dag_file_parses: int  # DAG files parsed by worker pool processes for the tasks they forked
    event_wakeup: bool = False  # a scheduler logged that it waits for database notifications
    worker_warmup: bool = False  # a worker logged that it warmed before its pool forked

    @classmethod
    def from_logs(cls, logs: Path) -> Accelerators:
        def lines(pattern: str):
            for f in sorted(logs.glob(pattern)):
                yield from f.read_text(errors="replace").splitlines()

        scheduler, worker = list(lines("scheduler-*.log")), list(lines("worker-*.log"))
        return cls(any("airscale pacing:" in x for x in scheduler),
                   sum("once for this pool process" in x for x in worker),
                   any("airscale event wake-up: the scheduler waits" in x for x in scheduler),
                   any("airscale: worker warmed before its pool forks" in x for x in worker))


@dataclass
class BenchResult:
    runs: list[metrics.RunFigures]
    idle_share: dict[str, float]
    plan_settings: dict[str, dict]
    config: BenchConfig
    started: float
    finished: float
    stock_restored: dict[str, dict] = field(default_factory=dict)
    stock_left: list[str] = field(default_factory=list)
    parses: list[prof.ParseFigures] = field(default_factory=list)
    loads: list[prof.ProfileFigures] = field(default_factory=list)
    idle_loop_ms: dict[str, list[float]] = field(default_factory=dict)
    accelerators: dict[str, Accelerators] = field(default_factory=dict)
    folders: list[prof.FolderFigures] = field(default_factory=list)
    density: list[prof.DensityFigures] = field(default_factory=list)
