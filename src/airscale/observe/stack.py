"""The monitoring stack as cluster components, and its configuration files under the data dir.

Components (stage 2: after PostgreSQL and Redis are up and the database is migrated):
prometheus, alertmanager, postgres-exporter, redis-exporter (profile scale), exporter (the
airscale exporter) and alert-receiver (when monitoring.local_receiver). All binaries come from
Debian packages (prometheus, prometheus-alertmanager, prometheus-postgres-exporter,
prometheus-redis-exporter) except the two airscale processes.

Secrets (database and Redis passwords, Slack URLs, SMTP passwords) only live in 0600 files:
alertmanager.yml and one env file per exporter, read by `launch`; never in a command line or
in supervisord.conf. Each component names the files it reads (`Component.reads`): `airscale up`
after a spec change reloads Prometheus and Alertmanager (SIGHUP) and restarts exactly the other
components whose files changed (airscale.runtime.inputs).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from airscale.observe.alertmanager import (
    RULES_FILE,
    render_alertmanager,
    render_prometheus,
)
from airscale.observe.receiver import receiver_token
from airscale.observe.rules import render_rules
from airscale.observe.settings import monitoring_active
from airscale.spec import Spec

PROMETHEUS = "prometheus"
PROMETHEUS_GOGC = "50"
EXPORTER_MMAP_THRESHOLD = 128 * 1024
ALERTMANAGER = "alertmanager"
POSTGRES_EXPORTER = "postgres-exporter"
REDIS_EXPORTER = "redis-exporter"
EXPORTER = "exporter"
ALERT_RECEIVER = "alert-receiver"
KINDS = (PROMETHEUS, ALERTMANAGER, POSTGRES_EXPORTER, REDIS_EXPORTER, EXPORTER, ALERT_RECEIVER)
STAGE = 2

BINARIES = {
    PROMETHEUS: "prometheus",
    ALERTMANAGER: "prometheus-alertmanager",
    POSTGRES_EXPORTER: "prometheus-postgres-exporter",
    REDIS_EXPORTER: "prometheus-redis-exporter",
}


@dataclass(frozen=True)
class MonitoringLayout:
    root: Path  # <data_dir>/monitoring

    @classmethod
    def of(cls, data_root: Path) -> MonitoringLayout:
        return cls(data_root / "monitoring")

    @property
    def prometheus_yml(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def rules_dir(self) -> Path:
        return self.root / "rules"

    @property
    def rules_file(self) -> Path:
        return self.rules_dir / RULES_FILE

    @property
    def receiver_token(self) -> Path:
        """The bundled alert receiver's bearer token (0600; Alertmanager sends it)."""
        return self.root / "alert-receiver.token"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus-data"

    @property
    def alertmanager_yml(self) -> Path:
        return self.root / "alertmanager.yml"

    @property
    def alertmanager_data(self) -> Path:
        return self.root / "alertmanager-data"

    @property
    def exporter_json(self) -> Path:
        return self.root / "exporter.json"

    @property
    def alerts_jsonl(self) -> Path:
        return self.root / "alerts.jsonl"

    def env_file(self, component: str) -> Path:
        return self.root / f"{component}.env"


def _launch(env_file: Path, *command: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "airscale.observe.launch", str(env_file), "--", *command)


def exporter_config(spec: Spec, layout, comps: list) -> dict:
    """What the airscale exporter needs besides the DSN (no secrets: plain 0644 JSON)."""
    host, ports = spec.client_host, spec.ports
    return {
        "host": spec.cluster.listen_host,
        "port": ports.exporter,
        "statsd_host": host,
        "statsd_port": ports.statsd,
        "failure_window": spec.monitoring.thresholds.failure_window,
        # New counter series read 0 for a scrape and a half (see statsd.Store).
        "new_series_zero_seconds": 1.5 * spec.monitoring.scrape_interval_seconds,
        "task_series": spec.monitoring.task_metrics.max_series,
        "task_limits": dict(spec.monitoring.task_metrics.metrics),
        "queues": {q: {"min_workers": s.min_workers, "max_workers": s.max_workers} for q, s in spec.queues.items()}
        if spec.uses_celery else {},
        "components": [
            {"name": c.name, "kind": c.kind, "queue": c.queue, "autostart": c.autostart}
            for c in comps if c.kind not in KINDS
        ],
        "supervisor_socket": str(layout.supervisor_socket),
        "restarts_file": str(layout.restarts_file),
        "data_dir": str(layout.root),
        # Scheduled backups' record (airscale.backup.schedule): the age of the last good one.
        "backup_state_file": str(layout.backup_state) if spec.backup.every_hours > 0 else None,
    }


def monitoring_components(spec: Spec, layout, base: list) -> list:
    """The monitoring stack's components (pure); `base` are the cluster's other components."""
    from airscale.runtime.component import Component

    if not monitoring_active(spec):
        return []
    ml = MonitoringLayout.of(layout.root)
    listen, ports = spec.cluster.listen_host, spec.ports
    out = [
        Component(
            PROMETHEUS, PROMETHEUS,
            (BINARIES[PROMETHEUS], f"--config.file={ml.prometheus_yml}",
             f"--storage.tsdb.path={ml.prometheus_data}",
             f"--storage.tsdb.retention.time={spec.monitoring.retention}",
             f"--web.listen-address={listen}:{ports.prometheus}"),
            stage=STAGE, stopsignal="TERM", stopwaitsecs=60,
            # Go's collector runs when the heap has grown by GOGC % since the last one. Debian's
            # Prometheus 2.42 keeps Go's 100, so its memory swung by a quarter between
            # collections in the soak; upstream runs at 50 since 2.53 ("minimal additional CPU,
            # greatly reduced memory").
            env={"GOGC": PROMETHEUS_GOGC},
            # SIGHUP: Prometheus reads its files again and keeps its data and targets' state.
            reads=(ml.prometheus_yml, ml.rules_file), reload_signal="HUP",
        ),
        Component(
            ALERTMANAGER, ALERTMANAGER,
            (BINARIES[ALERTMANAGER], f"--config.file={ml.alertmanager_yml}",
             f"--storage.path={ml.alertmanager_data}",
             f"--web.listen-address={listen}:{ports.alertmanager}",
             # An empty address turns off the HA gossip, which would listen on port 9094 of every
             # interface: two clusters on one machine would collide.
             "--cluster.listen-address="),
            stage=STAGE, reads=(ml.alertmanager_yml,), reload_signal="HUP",
        ),
        Component(
            POSTGRES_EXPORTER, POSTGRES_EXPORTER,
            _launch(ml.env_file(POSTGRES_EXPORTER), BINARIES[POSTGRES_EXPORTER],
                    f"--web.listen-address={listen}:{ports.postgres_exporter}"),
            stage=STAGE, reads=(ml.env_file(POSTGRES_EXPORTER),),
        ),
    ]
    if spec.uses_celery:
        out.append(Component(
            REDIS_EXPORTER, REDIS_EXPORTER,
            _launch(ml.env_file(REDIS_EXPORTER), BINARIES[REDIS_EXPORTER],
                    f"--web.listen-address={listen}:{ports.redis_exporter}"),
            stage=STAGE, reads=(ml.env_file(REDIS_EXPORTER),),
        ))
    out.append(Component(
        EXPORTER, EXPORTER,
        _launch(ml.env_file(EXPORTER), sys.executable, "-m", "airscale.observe.exporter", str(ml.exporter_json)),
        stage=STAGE, reads=(ml.exporter_json, ml.env_file(EXPORTER)),
        # A scrape renders ~12 MiB of text for 500 DAGs. glibc maps a block that large and unmaps
        # it when freed, but then raises its threshold to the block's size, so the next ones come
        # from the heap and stay: the exporter grew 20-40 MiB in steps in the soak (and 30 MiB in a
        # bare render loop, flat with the threshold fixed). Setting it keeps glibc's initial 128
        # KiB and turns the raising off.
        env={"MALLOC_MMAP_THRESHOLD_": str(EXPORTER_MMAP_THRESHOLD)},
    ))
    if spec.monitoring.local_receiver:
        out.append(Component(
            ALERT_RECEIVER, ALERT_RECEIVER,
            (sys.executable, "-m", "airscale.observe.receiver", listen, str(ports.alert_receiver),
             str(ml.alerts_jsonl), str(ml.receiver_token)),
            stage=STAGE, reads=(ml.receiver_token,),
        ))
    return out


def _split_secret(url: str) -> tuple[str, str | None, str | None]:
    """`scheme://user:pw@host...` -> (url without the password, user, password)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url, parts.username, None
    netloc = parts.netloc.rsplit("@", 1)[1]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc)), parts.username, unquote(parts.password)


def env_files(spec: Spec, secrets, ml: MonitoringLayout) -> tuple[dict[str, dict[str, str]], dict[Path, str]]:
    """Environment of each exporter and the 0600 secret files it reads (pure).

    Secrets never go into an environment variable, where `ps e` and /proc/PID/environ would
    show them: each exporter is told the path of a file that holds its password.
    """
    from airscale.runtime import broker
    from airscale.runtime.airflow_config import database_url
    from airscale.runtime.health import libpq_dsn

    host, ports = spec.client_host, spec.ports
    airflow_dsn = libpq_dsn(database_url(spec, secrets))
    if spec.database.url is None:
        # The superuser sees every session in pg_stat_activity; the airflow role only its own.
        pg_uri, pg_user, pg_pass = f"{host}:{ports.postgres}/airflow?sslmode=disable", "postgres", \
            secrets.postgres_superuser_password
    else:
        no_pw, pg_user, pg_pass = _split_secret(airflow_dsn)
        pg_uri = no_pw.split("://", 1)[1].split("@", 1)[-1]
    pg_pass_file = ml.root / "postgres-exporter.password"
    dsn_file = ml.root / "exporter.dsn"
    env = {
        POSTGRES_EXPORTER: {"DATA_SOURCE_URI": pg_uri, "DATA_SOURCE_USER": pg_user or "postgres",
                            "DATA_SOURCE_PASS_FILE": str(pg_pass_file)},
        EXPORTER: {"AIRSCALE_EXPORTER_DSN_FILE": str(dsn_file)},
    }
    files = {pg_pass_file: pg_pass or "", dsn_file: airflow_dsn}
    if spec.uses_celery:
        pw_file = ml.root / "redis-exporter.passwords.json"
        if broker.sentinel_on(spec):
            # Both nodes, scraped as targets of /scrape (alertmanager.scrape_configs): each
            # reports its role, and the primary is whichever says so.
            addrs = broker.node_urls(spec)
            redis_addr, passwords = addrs[0], {a: secrets.redis_password for a in addrs}
        else:
            redis_addr, _, redis_pass = _split_secret(broker.celery_url(spec, secrets))
            redis_addr = redis_addr.replace("redis://@", "redis://")
            passwords = {redis_addr: redis_pass or ""}
        # redis_exporter's password file maps each Redis address to its password.
        files[pw_file] = json.dumps(passwords)
        env[REDIS_EXPORTER] = {"REDIS_ADDR": redis_addr, "REDIS_PASSWORD_FILE": str(pw_file)}
    return env, files


def check_installed(spec: Spec) -> None:
    """The Debian binaries must exist, or `up` would end with components that keep exiting."""
    import shutil

    from airscale.errors import AirscaleError

    wanted = [PROMETHEUS, ALERTMANAGER, POSTGRES_EXPORTER] + ([REDIS_EXPORTER] if spec.uses_celery else [])
    missing = [BINARIES[k] for k in wanted if shutil.which(BINARIES[k]) is None]
    if missing:
        packages = " ".join(missing)  # the Debian package names are the binary names
        raise AirscaleError(
            f"monitoring is on but {', '.join(missing)} is not installed",
            f"run scripts/bootstrap or apt-get install {packages}; or set monitoring.enabled: false",
        )


def write_configs(spec: Spec, layout, secrets, comps: list) -> None:
    """Write every monitoring configuration file (called by `airscale up`)."""
    from airscale.runtime.secrets import write_private

    # Error handling as cluster policy (observe.policy): Airflow imports this from AIRFLOW_HOME/config.
    # It notifies through Alertmanager, so it exists only while monitoring is on.
    local_settings = layout.local_settings
    if monitoring_active(spec) and spec.monitoring.task_policy.enabled:
        from airscale.observe.policy import render_local_settings

        local_settings.parent.mkdir(parents=True, exist_ok=True)
        local_settings.write_text(render_local_settings(spec))
    else:
        local_settings.unlink(missing_ok=True)
    if not monitoring_active(spec):
        return
    check_installed(spec)
    ml = MonitoringLayout.of(layout.root)
    for d in (ml.root, ml.rules_dir, ml.prometheus_data, ml.alertmanager_data):
        d.mkdir(parents=True, exist_ok=True)
    ml.root.chmod(0o700)  # received alerts, Prometheus' data: this account's only
    ml.prometheus_yml.write_text(render_prometheus(spec, str(ml.rules_dir)))
    ml.rules_file.write_text(render_rules(spec))
    write_private(ml.receiver_token, receiver_token(secrets.api_secret_key) + "\n")
    write_private(ml.alertmanager_yml, render_alertmanager(spec, str(ml.receiver_token)))
    ml.exporter_json.write_text(json.dumps(exporter_config(spec, layout, comps), indent=2, sort_keys=True))
    envs, secret_files = env_files(spec, secrets, ml)
    for path, content in secret_files.items():
        write_private(path, content)
    for component, env in envs.items():
        write_private(ml.env_file(component), "".join(f"{k}={v}\n" for k, v in env.items()))
