"""Tuning: a workload profile in, planned settings (each with its reason) out.

`workload` describes the input, `planner.plan` is the pure decision, `apply` fits the plan to
a spec (queues, schedulers, overrides), `cli` prints it.
"""
