"""A workload profile: what a cluster must carry, in the terms an operator knows.

The planner (`planner.plan`) turns a profile into settings; this module only describes and
validates the input. Every field has a description (shown by `airscale plan --explain` and in
error messages) and a unit in its name. Cross-field checks catch profiles that cannot be true,
such as a peak below the average load that Little's law gives from tasks a day and duration.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from airscale.errors import AirscaleError
from airscale.spec.yamlfile import parse_yaml, read_text

SECONDS_PER_DAY = 86400
QUEUE_NAME = r"^[a-z][a-z0-9-]{0,30}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MachineSize(_Model):
    cores: int = Field(2, ge=1, le=512, description="CPU cores of one machine.")
    memory_gib: float = Field(8.0, ge=0.5, le=4096, description="Memory of one machine, GiB.")


class WorkloadProfile(_Model):
    """What the cluster must carry. Only `tasks_per_day` and `peak_concurrent_tasks` are
    essential; the rest has defaults that describe a small, steady, latency-sensitive cluster."""

    dags: int = Field(50, ge=1, le=100_000, description="Number of DAG files the dag-processor parses.")
    tasks_per_day: int = Field(
        10_000, ge=1, le=100_000_000, description="Task instances run in a day (all DAGs)."
    )
    typical_task_seconds: float = Field(
        30.0, gt=0, le=86_400, description="Typical (median) run time of one task, seconds."
    )
    peak_concurrent_tasks: int = Field(
        32, ge=1, le=100_000, description="Most task instances running at the same time."
    )
    burstiness: float = Field(
        3.0,
        ge=1.0,
        le=1000.0,
        description="Peak rate of task starts divided by the day's average rate (1 = steady; "
        "10 = most work arrives in short bursts, as with hourly batches).",
    )
    latency_goal_seconds: float = Field(
        0.25,
        ge=0.05,
        le=60.0,
        description="Wanted delay between one task finishing and the next one in a chain "
        "starting, seconds. Lower costs scheduler CPU while the cluster is quiet.",
    )
    parse_seconds_per_dag: float = Field(
        0.3, gt=0, le=600, description="Typical time to parse one DAG file, seconds."
    )
    schedulers: int = Field(
        1, ge=1, le=8,
        description="Active schedulers (taken from the spec's schedulers.count when applied by `airscale up`).",
    )
    queues: dict[Annotated[str, Field(pattern=QUEUE_NAME)], float] = Field(
        default_factory=lambda: {"default": 1.0},
        description="Share of the tasks each Celery queue runs, e.g. {default: 0.8, reports: 0.2} "
        "(normalised to sum 1).",
    )
    worker_machine: MachineSize = Field(
        default_factory=lambda: MachineSize(cores=2, memory_gib=8.0),
        description="Size of the machine one Celery worker gets.",
    )
    control_machine: MachineSize = Field(
        default_factory=lambda: MachineSize(cores=2, memory_gib=8.0),
        description="Size of the machine running the schedulers and the dag-processor.",
    )
    database_machine: MachineSize = Field(
        default_factory=lambda: MachineSize(cores=2, memory_gib=4.0),
        description="Size of the machine (or the share of it) given to PostgreSQL.",
    )

    @field_validator("queues")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("name at least one queue, e.g. {default: 1.0}")
        for name, share in v.items():
            if not (share > 0 and math.isfinite(share)):
                raise ValueError(f"share of queue {name!r} must be a positive number, not {share}")
        total = sum(v.values())
        return {k: s / total for k, s in v.items()}

    @field_validator("peak_concurrent_tasks")
    @classmethod
    def _peak_not_below_average(cls, v: int, info: ValidationInfo) -> int:
        # Little's law gives the average; a peak below it cannot be true. Checked on this
        # field (declared after the two it depends on) so the error names it.
        per_day, seconds = info.data.get("tasks_per_day"), info.data.get("typical_task_seconds")
        if per_day is None or seconds is None:
            return v
        avg = per_day * seconds / SECONDS_PER_DAY
        if v < math.floor(avg):
            raise ValueError(
                f"{v} is below the average of {avg:.0f} running tasks that tasks_per_day x "
                "typical_task_seconds / 86400 gives; raise peak_concurrent_tasks or lower "
                "tasks_per_day or typical_task_seconds"
            )
        return v

    @property
    def average_concurrent_tasks(self) -> float:
        """Little's law: arrival rate x time in system."""
        return self.tasks_per_day * self.typical_task_seconds / SECONDS_PER_DAY

    @property
    def peak_start_rate(self) -> float:
        """Task starts per second at the busiest time."""
        return self.tasks_per_day / SECONDS_PER_DAY * self.burstiness


def parse_profile(data: Any, source: str) -> WorkloadProfile:
    """Validate a profile from YAML data; errors name `source` and each bad field."""
    from airscale.spec.load import format_validation_error

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AirscaleError(
            f"{source}: a workload profile must be a mapping (tasks_per_day: ..., "
            f"peak_concurrent_tasks: ...), not a {type(data).__name__}",
            "see `airscale plan --help` for the fields",
        )
    try:
        return WorkloadProfile.model_validate(data)
    except ValidationError as e:
        raise AirscaleError(
            f"{source}: invalid workload profile\n" + format_validation_error(e),
            "fix the named field(s); `airscale plan --help` describes each",
        ) from None


def load_profile(path: str | Path) -> WorkloadProfile:
    path = Path(path)
    try:
        text = read_text(path, "workload profile")
    except FileNotFoundError:
        raise AirscaleError(
            f"{path}: workload profile not found",
            "write one (see examples/workload.yaml) or fix the path",
        ) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise AirscaleError(f"{path}: cannot read the workload profile ({e.__class__.__name__})") from None
    return parse_profile(parse_yaml(text, path, "workload profile"), str(path))


def describe_fields() -> list[tuple[str, str, Any]]:
    """(name, description, default) of each profile field, for help texts."""
    out = []
    for name, f in WorkloadProfile.model_fields.items():
        default = f.default_factory() if f.default_factory else f.default
        if isinstance(default, BaseModel):
            default = default.model_dump()
        out.append((name, f.description or "", default))
    return out
