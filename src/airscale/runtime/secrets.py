"""Cluster secrets: generated once, kept in one file with mode 0600, never printed or logged.

Processes receive secrets only through files (airflow.cfg, redis.conf, both 0600), never on a
command line or in the environment, where `ps` or /proc would show them.
"""

from __future__ import annotations

import json
import os
import secrets as _random
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from cryptography.fernet import Fernet


@dataclass(frozen=True)
class Secrets:
    fernet_key: str
    api_secret_key: str
    jwt_secret: str  # HS512 wants at least 64 bytes
    postgres_superuser_password: str
    airflow_db_password: str
    redis_password: str
    admin_password: str

    @classmethod
    def generate(cls) -> Secrets:
        return cls(
            fernet_key=Fernet.generate_key().decode(),
            api_secret_key=_random.token_urlsafe(32),
            jwt_secret=_random.token_urlsafe(64),
            postgres_superuser_password=_random.token_urlsafe(24),
            airflow_db_password=_random.token_urlsafe(24),
            redis_password=_random.token_urlsafe(24),
            admin_password=_random.token_urlsafe(12),
        )

    def values(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]


def write_private(path: Path, text: str) -> None:
    """Write a file that only its owner may read, without a window where it is readable."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create(path: Path) -> tuple[Secrets, bool]:
    """Return the cluster's secrets and whether they were created just now."""
    if path.exists():
        data = json.loads(path.read_text())
        return Secrets(**data), False
    s = Secrets.generate()
    write_private(path, json.dumps(asdict(s), indent=2))
    return s, True


def load(path: Path) -> Secrets:
    return Secrets(**json.loads(path.read_text()))
