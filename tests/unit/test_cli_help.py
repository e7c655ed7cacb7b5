"""Every command of the CLI, found by walking typer's click tree, keeps the CLI's conventions
(spec/cli_options.py): `-s/--spec` where a spec or cluster is read, `--json` where results are
printed, an `Example:` line in every `--help`.

A command may lack `--spec` or `--json` only with a reason in the allow-lists below; a stale
entry (a command that is gone, or has the option after all) fails too, so the lists stay true.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from airscale.cli import app

ROOT = typer.main.get_command(app)

# Commands that read no spec, and why.
NO_SPEC = {
    "schema": "prints the spec's format, not a spec",
    "bench": "builds its own stock and tuned clusters under --root",
    "soak": "builds its own soak cluster under --root",
}

# Commands that print no results a script would parse, and why.
NO_RESULTS = {
    "init": "writes the example spec; the file is the result",
    "down": "prints progress; the exit code is the result",
    "logs": "streams a log file as it is",
    "start": "the exit code is the result",
    "stop": "the exit code is the result",
    "restart": "the exit code is the result",
    "airflow": "prints what Airflow prints (Airflow's own `-o json`)",
    "autoscale": "a foreground service; its decisions are in `status` and its metrics",
    "exporter": "a foreground service; its output is Prometheus metrics",
    "worker join": "a foreground service (a Celery worker)",
    "bench": "writes a markdown report with plots to --out-dir",
    "render k8s": "writes manifests to --out-dir; the files are the result",
    "dashboards export": "writes dashboards to a folder; the files are the result",
    "schema": "its output is JSON (the schema) already",
}


def is_group(cmd) -> bool:
    # Duck-typed: typer vendors its own click, so click.Group is not its base class.
    return hasattr(cmd, "commands")


def walk(cmd, path: tuple[str, ...] = ()):
    yield path, cmd
    if is_group(cmd):
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, path + (name,))


ALL = list(walk(ROOT))
LEAVES = {" ".join(p): c for p, c in ALL if not is_group(c)}


def options(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}


def test_the_walk_finds_the_sub_apps():
    assert {"status", "db advise", "db clean", "alerts tail", "render k8s", "worker join", "airflow",
            "schema", "drill", "plan"} <= set(LEAVES)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_spec_option(name):
    has = {"--spec", "-s"} <= options(LEAVES[name])
    assert has != (name in NO_SPEC), f"{name}: give it -s/--spec (SpecOption), or drop it from NO_SPEC"


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_json_option(name):
    has = "--json" in options(LEAVES[name])
    assert has != (name in NO_RESULTS), f"{name}: give it --json (JsonOption), or drop it from NO_RESULTS"


def test_allow_lists_name_real_commands():
    assert set(NO_SPEC) <= set(LEAVES) and set(NO_RESULTS) <= set(LEAVES)


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "airscale")
def test_every_help_has_an_example(path):
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output, f"airscale {' '.join(path)} --help has no Example: line"


def test_top_level_help_documents_exit_codes_and_version():
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert "Exit codes: 0 ok; 1" in result.output and "2 bad input" in result.output
    assert "--version" in result.output
