"""Benchmarks: stock Airflow settings against airscale's plan, on the same machine in one run.

`scenarios` (which DAGs) and `metrics` (figures from task-instance rows) are pure; `specs`
builds the two clusters' specs (`stock` says what "stock" means); `driver` brings a cluster up
and down and accounts its CPU; `playback` runs the scenarios on both and times them
(`run_bench`); `results` is what a run found; `report` writes markdown and plots.
"""
