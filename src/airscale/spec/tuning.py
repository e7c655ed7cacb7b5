"""The spec's `tuning` section: which workload profile `airscale up` plans settings for.

The plan's Airflow settings go into airflow.cfg between what airscale derives (ports,
secrets) and the spec's `airflow_config`, which always wins; its PostgreSQL settings go into
the embedded PostgreSQL's airscale.conf, where `tuning.postgres` and an explicitly set
`database.max_connections` win.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from airscale.spec.types import ConfigValue, PostgresName, SafePath
from airscale.spec.workload import WorkloadProfile


class TuningSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = Field(
        True,
        description="Apply the tuning plan (`airscale plan`) of the workload below when the "
        "cluster comes up (lower scheduling latency, sized PostgreSQL); false keeps Airflow's "
        "stock settings.",
    )
    workload: WorkloadProfile | None = Field(
        None,
        description="The workload profile inline (dags, tasks_per_day, peak_concurrent_tasks, ...); "
        "empty: workload_file, or a profile sized from the queues.",
    )
    workload_file: SafePath | None = Field(
        None, description="A workload profile YAML file (relative to this spec file) instead of inline."
    )
    postgres: dict[PostgresName, ConfigValue] = Field(
        default_factory=dict,
        max_length=200,
        description="PostgreSQL settings that win over the plan's (e.g. {work_mem: 16MB}).",
    )

    db_retention_days: int = Field(
        90,
        ge=1,
        le=36500,
        description="`airscale db clean` deletes task instances, DAG runs, logs and jobs older "
        "than this many days from the metadata database, then vacuums it.",
    )
    db_clean_every_hours: float = Field(
        0,
        ge=0,
        le=8760,
        description="Run `airscale db clean` (retention above) every this many hours from a "
        "supervised `db-cleaner` component that `airscale up` starts; 0 = only by hand. 24 suits "
        "most clusters: with the 90-day retention each daily clean deletes one day of rows.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> TuningSpec:
        if self.workload is not None and self.workload_file is not None:
            raise ValueError("give the workload inline or as workload_file, not both")
        return self
