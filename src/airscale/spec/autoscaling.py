"""The `autoscaling` section of the spec: how the autoscaler follows each queue's load.

Per-queue bounds and slot counts are not repeated here: they come from
`queues.<name>.min_workers / max_workers / concurrency`, so one number never lives in two places.
The defaults follow the Kubernetes HPA where it has one (tolerance 0.1, scale-down
stabilization 300 s), because those values are what operators already know. The window holds
workers for load nobody announced; workers held for a scheduled run go when the run is done.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AutoscalingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = Field(
        False,
        description="Run the autoscaler with the cluster (`airscale up` starts it): Celery workers "
        "of each queue follow (queued + running) / concurrency between min_workers and max_workers.",
    )
    interval: float = Field(
        5.0,
        ge=0.5,
        le=300,
        description="Seconds between two autoscaler decisions while the queues are quiet (KEDA polls "
        "every 5-10 s); while tasks are queued or workers start or drain, at most 1 s.",
    )
    tolerance: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Do nothing while demand / capacity stays within 1 +/- this fraction, so small "
        "wobbles do not start or stop workers (the Kubernetes HPA uses 0.1).",
    )
    scale_up_max_step: int = Field(
        2,
        ge=1,
        le=64,
        description="Most workers added to a queue in one decision: a spike in the signals "
        "cannot start every standby worker at once.",
    )
    stabilization_window: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Seconds of recommendations a scale-down looks back on: workers are only "
        "removed down to the highest recommendation in the window (the Kubernetes HPA default is "
        "300 s), which stops flapping when load comes in waves. Load of scheduled DAG runs is held "
        "only while such a run is in progress: the next run is pre-warmed for.",
    )
    scale_to_zero: bool = Field(
        False,
        description="Let a queue with nothing queued, running or due go below min_workers to zero "
        "workers (after the stabilization window); the first queued task brings a worker back.",
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
