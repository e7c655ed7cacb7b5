"""A tiny wrapper that keeps secrets out of `ps` and out of supervisord.conf.

`python -m airscale.observe.launch ENV_FILE -- COMMAND...` reads KEY=VALUE lines from ENV_FILE
(mode 0600, refused otherwise), adds them to the environment and execs COMMAND, which thus
becomes the supervised process itself (signals from supervisord reach it directly).
postgres_exporter reads its DSN from DATA_SOURCE_NAME, redis_exporter its password from
REDIS_PASSWORD, and the airscale exporter its DSN from AIRSCALE_EXPORTER_DSN.
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
