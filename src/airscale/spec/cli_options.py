"""How every airscale command names its spec and prints results for scripts, in one place.

The main CLI (airscale/cli.py) and the sub-CLIs of each layer (dbcare, observe, drills,
deploy, ...) declare their options from here, so one command cannot drift from the others:
the spec is always `-s/--spec FILE` (or $AIRSCALE_SPEC), results are always `--json` on
stdout, written folders are always `-d/--out-dir`. It lives with the spec because every layer
may import the spec and none may import the CLI above it (the layering contract in
pyproject.toml). tests/unit/test_cli_help.py walks every command and holds them to it.

Exit codes, the same for every command: 0 ok; 1 the thing checked failed (a drill's verdict,
a triggered run, a benchmark's tasks); 2 bad input or usage (the spec, an option, a cluster
that is not there), with a message that names the fix.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from airscale.errors import AirscaleError

DEFAULT_SPEC = Path("airscale.yaml")

EXIT_CODES = (
    "Exit codes: 0 ok; 1 the thing checked failed (drill verdict, triggered run, bench tasks); "
    "2 bad input or usage (spec, options, a cluster that is not there)."
)

SpecOption = typer.Option(
    DEFAULT_SPEC, "--spec", "-s", envvar="AIRSCALE_SPEC",
    help="The cluster's spec file.", show_default=True,
)

JsonOption = typer.Option(False, "--json", help="Print the result as JSON on stdout, for scripts.")

OutDirOption = typer.Option(None, "--out-dir", "-d", help="Folder the files are written to.")
# `-o` reads as an output format to kubectl users; the folder option was `--output/-o`
# (render) and `--out` (bench). Still accepted, not shown, with a warning.
OldOutDirOption = typer.Option(None, "--output", "-o", "--out", hidden=True)


def print_json(data: Any) -> None:
    """Results for scripts: plain JSON on stdout, never rich markup or wrapping."""
    print(json.dumps(data, indent=1, default=str))


def spec_path(positional: Path | None, spec: Path) -> Path:
    """The spec of a command that also takes it as a positional argument (`validate FILE`,
    `init FILE`, kept for the commands people already type): the positional if given."""
    if positional is not None and spec != DEFAULT_SPEC and positional != spec:
        raise AirscaleError(f"two spec files given: {positional} and --spec {spec}", "give one of them")
    return positional if positional is not None else spec


def out_dir(new: Path | None, old: Path | None, default: Path | None = None) -> Path:
    """The folder of `-d/--out-dir`, or of its deprecated spellings (with a warning)."""
    if old is not None:
        print("warning: -o/--output/--out is deprecated; use -d/--out-dir", file=sys.stderr)
    chosen = new or old or default
    if chosen is None:
        raise AirscaleError("no output folder given", "pass -d/--out-dir DIR")
    return chosen
