"""Backups of a cluster: `airscale backup`, `airscale restore`, and backups on a schedule.

`archive` is the archive's format and the pure checks a restore makes; `take` writes an
archive of a running cluster; `restore` brings one back into an empty data folder; `schedule`
runs `take` periodically with retention as the `backup` component when `backup.every_hours` is
set (`capability` adds it to the cluster).
"""
