"""A tiny wrapper that keeps secrets out of `ps` and out of supervisord.conf.

`python -m airscale.observe.launch ENV_FILE -- COMMAND...` reads KEY=VALUE lines from ENV_FILE
(mode 0600, refused otherwise), adds them to the environment and execs COMMAND, which thus
becomes the supervised process itself (signals from supervisord reach it directly).
The env files name secret files (postgres_exporter's DATA_SOURCE_PASS_FILE, redis_exporter's
REDIS_PASSWORD_FILE, the airscale exporter's AIRSCALE_EXPORTER_DSN_FILE), never secrets.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path


def read_env_file(path: Path) -> dict[str, str]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SystemExit(f"{path}: mode {mode:o} lets others read secrets; expected 0600")
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit("usage: python -m airscale.observe.launch ENV_FILE -- COMMAND [ARGS...]")
    env = dict(os.environ)
    env.update(read_env_file(Path(argv[1])))
    os.execvpe(argv[3], argv[3:], env)


if __name__ == "__main__":
    main(sys.argv)
