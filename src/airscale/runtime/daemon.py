"""The supervised daemons that read the spec file (`python -m MODULE --spec FILE`): the
reclaimer and the db-cleaner. Their component and their entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from airscale.runtime.component import Component
from airscale.spec import Spec

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def spec_daemon(description: str, run: Callable[[Spec], object], argv: list[str] | None = None) -> int:
    """Parse `--spec`, log to stdout (supervisord keeps the file), run; a bad spec is one line
    on stderr and exit code 2, as on the CLI."""
    from airscale.errors import AirscaleError
    from airscale.spec import load_spec

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--spec", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format=LOG_FORMAT)
    try:
        run(load_spec(args.spec))
    except AirscaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def spec_daemon_component(name: str, module: str, spec: Spec, stage: int) -> Component:
    """The supervised process that runs `module` on the spec file the cluster came up with."""
    from airscale.runtime.layout import Layout

    assert spec.spec_file is not None
    # The versions file: a new airscale installed is code it has not loaded (runtime.versions).
    return Component(name, name, (sys.executable, "-m", module, "--spec", str(spec.spec_file)), stage=stage,
                     reads=(spec.spec_file, Layout(spec.data_path).versions_file))
