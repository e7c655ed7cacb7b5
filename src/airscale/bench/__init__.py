"""Benchmarks: stock Airflow settings against airscale's plan, on the same machine in one run.

`scenarios` (which DAGs) and `metrics` (figures from task-instance rows) are pure; `runner`
brings the clusters up and measures; `report` writes markdown and plots; `stock` says what
"stock" means.
"""
