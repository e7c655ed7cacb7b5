"""The `autoscaling` section of the spec: how the autoscaler follows each queue's load.

Per-queue bounds and slot counts are not repeated here: they come from
`queues.<name>.min_workers / max_workers / concurrency`, so one number never lives in two places.
The tolerance follows the Kubernetes HPA (0.1). The interval, stabilization window and
scale-up step are empty by default: `airscale plan` derives them from the worker start-up and
drain times this machine measured (tuning/autoscaling.py says how and why); a value given here
wins. The window holds workers for load nobody announced; workers held for a scheduled run go
when the run is done.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AutoscalingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool | None = Field(
        None,
        description="Run the autoscaler with the cluster (`airscale up` starts it): Celery workers "
        "of each queue follow (queued + running) / concurrency between min_workers and max_workers. "
        "Empty: on when some queue's max_workers is above its min_workers (profile 'scale'); "
        "false keeps every worker up.",
    )
    interval: float | None = Field(
        None,
        ge=0.5,
        le=300,
        description="Seconds between two autoscaler decisions while the queues are quiet; while "
        "tasks are queued or workers start or drain, at most 1 s. Empty: a third of the measured "
        "worker start-up, 2-5 s (`airscale plan` shows the figure).",
    )
    tolerance: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Do nothing while demand / capacity stays within 1 +/- this fraction, so small "
        "wobbles do not start or stop workers (the Kubernetes HPA uses 0.1).",
    )
    scale_up_max_step: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Most workers added to a queue in one decision. Empty: no limit below "
        "max_workers, so a burst gets the workers its backlog needs in one decision; "
        "memory_floor_mib is what holds starts back.",
    )
    stabilization_window: float | None = Field(
        None,
        ge=0,
        le=86400,
        description="Seconds of recommendations a scale-down looks back on: workers are only "
        "removed down to the highest recommendation in the window, which stops flapping when load "
        "comes in waves. Load of scheduled DAG runs is held only while such a run is in progress: "
        "the next run is pre-warmed for. Empty: 4 measured worker start-ups minus the measured "
        "drain, 20-300 s (scale-down is drain-first, so a short window kills no task; the "
        "Kubernetes HPA's 300 s protects pods that are killed).",
    )
    scale_to_zero: bool = Field(
        False,
        description="Let a queue with nothing queued, running or due go below min_workers to zero "
        "workers (after the stabilization window); the first queued task brings a worker back.",
    )
    memory_floor_mib: int | None = Field(
        None,
        ge=0,
        le=16 * 1024 * 1024,
        description="The autoscaler starts no worker above min_workers that would leave less than "
        "this much memory available (MiB) once its slots run tasks: it holds with reason "
        "MemoryHeadroom instead. Empty: 10 % of the machine's memory, at least 512 MiB.",
    )
    prewarm_lookahead: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="Seconds ahead the autoscaler looks at scheduled DAG runs (0 turns pre-warming "
        "off). Workers for a run's tasks are started as long before it as a worker takes to start "
        "(the slowest of the last 5 measured start-ups, plus two intervals and 5 s), at most this "
        "far ahead; until a start-up has been measured, this far ahead.",
    )
