"""Observability and alerting: the monitoring stack, the airscale exporter, alert rules.

Layers, bottom up: `settings` (is monitoring on, statsd settings for Airflow: pure),
`statsd` (statsd line -> labeled Prometheus sample: pure), `rules` and `alertmanager`
(configuration rendered from the spec: pure), `stack` (components and config files: the only
module here that writes under the data dir), then the processes (`exporter`, `receiver`,
`launch`) and the CLI (`cli`).
"""
