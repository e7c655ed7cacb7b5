"""Field types for spec values that end up in a generated file, a command line, a URL or SQL.

airscale writes spec values into redis.conf, PostgreSQL's airscale.conf, pgbouncer.ini,
airflow.cfg, supervisord.conf, Alertmanager's YAML and Kubernetes manifests, and passes them
on command lines. None of those formats survives every string: a newline in `listen_host`
adds a directive to redis.conf, a quote ends PostgreSQL's `listen_addresses` early, a newline
in an airflow.cfg key starts a new section. Rather than escape each value for each format
(and miss one), the spec accepts only values that are harmless in all of them: host names
and IP addresses, config names of the shape Airflow and PostgreSQL use, scalars without
control characters, URLs of the expected schemes, e-mail addresses. Every string is bounded,
so a hostile spec cannot make a renderer build something huge.

Each type is an `Annotated` alias: a check function raising `ValueError` with the fix, which
pydantic reports under the field's path.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator

# Longest string value the spec takes (a URL with credentials fits; a pasted file does not).
MAX_TEXT = 2048
MAX_PATH = 1024
# Patterns are applied with fullmatch: `$` alone would let a trailing newline through.
# Control characters (newline, CR, NUL, ESC ...) break every line-based format airscale writes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 1123 host name: dot-separated labels of letters, digits and inner '-'.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Airflow's sections and keys (airflow/config_templates/config.yml) are all lower case with
# '_' (and digits); configparser would fold upper case anyway, so it is refused, not changed.
_CONFIG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
# PostgreSQL parameter names; custom ones (extension.setting) have one dot.
_PG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62})?$")
# A plain mailbox: no display name, no quotes, no spaces, so nothing that could end a header.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}$")


def _text(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("must not contain a newline or other control character")
    if len(v) > MAX_TEXT:
        raise ValueError(f"is {len(v)} characters long; at most {MAX_TEXT}")
    return v


def _host(v: str) -> str:
    try:
        ipaddress.ip_address(v)
        return v
    except ValueError:
        pass
    labels = v.removesuffix(".").split(".")
    if len(v) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{v!r} is not a host name or IP address; write e.g. 127.0.0.1, 0.0.0.0, ::1 or db.example.com"
        )
    return v


def _config_name(v: str) -> str:
    if not _CONFIG_NAME.fullmatch(v):
        raise ValueError(
            f"{v!r} is not an Airflow config name: lower-case letters, digits and '_', "
            "starting with a letter (as in airflow.cfg, e.g. parsing_processes)"
        )
    return v


def _pg_name(v: str) -> str:
    if not _PG_NAME.fullmatch(v):
        raise ValueError(f"{v!r} is not a PostgreSQL setting name; write e.g. work_mem or auto_explain.log_min_duration")
    return v


def _scalar(v: Any) -> Any:
    # bool is an int: both are fine. Lists and mappings are refused here, before anything walks them.
    if isinstance(v, str):
        return _text(v)
    if isinstance(v, (bool, int, float)):
        return v
    raise ValueError(f"must be a string, a number or true/false, not a {type(v).__name__}")


def _path(v: Path) -> Path:
    s = str(v)
    if _CONTROL.search(s):
        raise ValueError("must not contain a newline or other control character")
    if len(s) > MAX_PATH:
        raise ValueError(f"is {len(s)} characters long; at most {MAX_PATH}")
    if s.startswith("~"):
        raise ValueError(f"{s!r}: airscale does not expand '~'; write the full path")
    return v


def url_checker(what: str, schemes: tuple[str, ...], example: str, drivers: bool = False):
    """A check for URLs of one kind: one of `schemes` (with `drivers`, also `scheme+driver`, as
    SQLAlchemy writes postgresql+psycopg2), a host, no spaces or control characters."""

    def check(v: str) -> str:
        _text(v)
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError(f"{v!r} is not a valid URL; write e.g. {example}") from None
        scheme = parts.scheme.lower()
        if drivers:
            scheme = scheme.split("+", 1)[0]
        if scheme not in schemes or not parts.hostname or " " in v:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise ValueError(f"must be {what} URL ({allowed}) with a host; write e.g. {example}")
        return v

    return check


def _email(v: str) -> str:
    _text(v)
    if not _EMAIL.fullmatch(v) or ".." in v.split("@", 1)[1]:
        raise ValueError(f"{v!r} is not a plain e-mail address; write e.g. ops@example.com (no name, no <>)")
    return v


def _emails(v: str) -> str:
    _text(v)
    for address in v.split(","):
        _email(address.strip())
    return v


def _host_port(v: str) -> str:
    _text(v)
    host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{v!r} must be host:port, e.g. smtp.example.com:587")
    _host(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    return v


Text = Annotated[str, AfterValidator(_text)]
HostName = Annotated[str, AfterValidator(_host)]
ConfigName = Annotated[str, AfterValidator(_config_name)]
PostgresName = Annotated[str, AfterValidator(_pg_name)]
ConfigValue = Annotated[Any, AfterValidator(_scalar)]
SafePath = Annotated[Path, AfterValidator(_path)]
HttpUrl = Annotated[str, AfterValidator(url_checker("an http(s)", ("http", "https"), "https://hooks.example.com/x"))]
PostgresUrl = Annotated[str, AfterValidator(url_checker(
    "a PostgreSQL", ("postgresql",), "postgresql+psycopg2://user:pw@host:5432/db", drivers=True))]
RedisUrl = Annotated[str, AfterValidator(url_checker("a Redis", ("redis", "rediss"), "redis://:password@host:6379/0"))]
EmailAddress = Annotated[str, AfterValidator(_email)]
EmailList = Annotated[str, AfterValidator(_emails)]
HostPort = Annotated[str, AfterValidator(_host_port)]
