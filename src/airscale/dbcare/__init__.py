"""Database care: advice on the metadata database (indexes, bloat, sizes) and retention.

`advise` is pure (rows in, advice out); `inspect` reads the catalog; `clean` runs
`airflow db clean` and VACUUM; `schedule` runs that clean periodically as the `db-cleaner`
component when `tuning.db_clean_every_hours` is set; `cli` is `airscale db advise|clean`.
"""
