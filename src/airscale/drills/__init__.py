"""Failure drills: kill one part of a live cluster while a workload runs, then judge.

`verdict` is pure (observations -> verdict); `scenarios` injects the faults; `observe` reads
the metadata database; `runner` puts them together; `report` writes the markdown report.
"""
