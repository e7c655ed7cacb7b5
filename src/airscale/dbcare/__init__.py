"""Database care: advice on the metadata database (indexes, bloat, sizes) and retention.

`advise` is pure (rows in, advice out); `inspect` reads the catalog; `clean` runs
`airflow db clean` and VACUUM; `cli` is `airscale db advise|clean`.
"""
