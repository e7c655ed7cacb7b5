"""The Secrets the rendering refers to by name, with their keys (pure; SECRETS.md lists them)."""

from __future__ import annotations

from airscale.spec import Spec

from .naming import CELERY


def required_secrets(spec: Spec, executor: str = CELERY) -> list[tuple[str, list[str], str]]:
    """(Secret name, keys, what goes in it) for every Secret the rendering refers to."""
    s = spec.kubernetes.secrets
    out = [
        (s.metadata, ["connection"], "metadata DB URL, postgresql://USER:PASSWORD@"
         f"{spec.kubernetes.release}-pgbouncer.{spec.kubernetes.namespace}:6543/{spec.kubernetes.release}-metadata"
         "?sslmode=disable (through PgBouncer); also read by KEDA's SQL trigger and airscale's pods"),
        (s.fernet_key, ["fernet-key"], "Fernet key: python -c 'from cryptography.fernet import Fernet; "
         "print(Fernet.generate_key().decode())'"),
        (s.api_secret_key, ["api-secret-key"], "random string, e.g. openssl rand -hex 32"),
        (s.jwt_secret, ["jwt-secret"], "random string of at least 64 bytes, e.g. openssl rand -hex 64"),
        (s.pgbouncer_config, ["pgbouncer.ini", "users.txt"], "PgBouncer configuration: databases "
         f"{spec.kubernetes.release}-metadata pointing at your PostgreSQL, and the user list"),
        (s.pgbouncer_stats, ["connection"], "postgresql://USER:PASSWORD@127.0.0.1:6543/pgbouncer?sslmode=disable"),
        (s.postgres_exporter, ["connection"], "postgres_exporter's PostgreSQL URL, postgresql://USER:PASSWORD@"
         "HOST:5432/DATABASE?sslmode=require: your PostgreSQL itself (not PgBouncer), USER with the pg_monitor role"),
        (s.alertmanager, ["alertmanager.yaml"], "Alertmanager configuration (receivers with their "
         "URLs and tokens); give its name to your Alertmanager (kube-prometheus-stack: "
         "alertmanager.alertmanagerSpec.configSecret)"),
    ]
    if executor == CELERY:
        out.insert(1, (s.broker, ["connection"], "Celery broker URL, redis://:PASSWORD@"
                       f"{spec.kubernetes.release}-redis:6379/0 with the chart's Redis"))
        if spec.broker.url is None:
            out.insert(2, (s.redis_password, ["password"], "the PASSWORD of the broker URL"))
    return out
