"""Celery workers that follow the queue, warm up before scheduled bursts and never stop a
busy worker.

Three parts kept apart: `signals` (read-only facts), `policy` and `plan` (pure decisions, the
clock passed in), `actuator` (the only code that starts or stops workers); `loop` ties them
together and survives failures.
"""
