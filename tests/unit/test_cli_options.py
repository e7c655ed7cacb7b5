"""The CLI's shared options behave: `--version`, the positional spec kept as an alias of
`--spec`, `airscale airflow` passing its arguments through verbatim, JSON results, and the
deprecated `-o` of `render k8s`. In-process (CliRunner): errors arrive as AirscaleError,
which main() turns into exit code 2 (tests/unit/test_cli_errors.py runs the real CLI)."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import airscale.cli as cli
from airscale.errors import AirscaleError
from airscale.runtime.layout import Layout
from airscale.spec import load_spec

run = CliRunner().invoke


def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "airscale.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"name": "opts", "data_dir": str(tmp_path / "data")}}))
    return path


def test_version():
    result = run(cli.app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"airscale {version('airscale')}"


def test_validate_takes_the_spec_as_positional_or_option(tmp_path):
    path = spec_file(tmp_path)
    by_option = run(cli.app, ["validate", "-s", str(path), "--json"])
    by_positional = run(cli.app, ["validate", str(path), "--json"])
    assert by_option.exit_code == by_positional.exit_code == 0, by_option.output
    assert json.loads(by_option.stdout) == json.loads(by_positional.stdout)
    assert json.loads(by_option.stdout)["cluster"] == "opts"


def test_two_different_spec_files_are_refused(tmp_path):
    result = run(cli.app, ["validate", str(spec_file(tmp_path)), "-s", str(tmp_path / "other.yaml")])
    assert isinstance(result.exception, AirscaleError) and "two spec files" in result.exception.problem


def test_init_writes_where_spec_says(tmp_path):
    result = run(cli.app, ["init", "-s", str(tmp_path / "new.yaml"), "--name", "fresh"])
    assert result.exit_code == 0, result.output
    assert load_spec(tmp_path / "new.yaml").cluster.name == "fresh"
    assert "airscale validate -s" in result.output


def test_airflow_passes_arguments_through_verbatim(tmp_path, monkeypatch):
    path = spec_file(tmp_path)
    layout = Layout(load_spec(path).data_path)
    layout.airflow_cfg.parent.mkdir(parents=True)
    layout.airflow_cfg.write_text("[core]\n")
    calls = []

    def fake_execve(binary, argv, env):
        calls.append((binary, argv, env))
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "execve", fake_execve)
    # After Airflow's first argument, -s and --help are Airflow's (backfill's --start-date).
    args = ["dags", "backfill", "-s", "2024-01-01", "--help", "--unknown-to-airscale"]
    result = run(cli.app, ["airflow", "-s", str(path), *args])
    assert result.exit_code == 0, result.output
    binary, argv, env = calls[0]
    assert argv == [binary, *args] and binary.endswith("/airflow")
    assert env["AIRFLOW_HOME"] == str(layout.airflow_home)
    assert env["AIRFLOW_CONFIG"] == str(layout.airflow_cfg)


def test_airflow_needs_a_configured_cluster(tmp_path):
    result = run(cli.app, ["airflow", "-s", str(spec_file(tmp_path)), "dags", "list"])
    assert isinstance(result.exception, AirscaleError) and "airscale up" in result.exception.fix


@pytest.mark.parametrize("flag", ["-d", "--out-dir", "-o", "--output"])
def test_render_out_dir_and_its_deprecated_spellings(tmp_path, flag):
    result = run(cli.app, ["render", "k8s", flag, str(tmp_path / "out"), "-s", str(spec_file(tmp_path))])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "values.yaml").exists()
    assert ("deprecated" in result.stderr) == (flag in ("-o", "--output"))


def test_plan_of_the_spec_matches_plan_of_its_profile(tmp_path):
    from dataclasses import asdict

    from airscale.tuning.apply import profile_for
    from airscale.tuning.planner import plan

    path = spec_file(tmp_path)
    result = run(cli.app, ["plan", "-s", str(path), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    # With a spec, the autoscaling settings and the memory check come with the plan.
    assert printed.pop("autoscaling")["settings"] and printed.pop("memory")["need_mib"] > 0
    assert printed == json.loads(json.dumps(asdict(plan(profile_for(load_spec(path)))), default=str))


def test_plan_prints_each_autoscaling_setting_with_the_figure_it_came_from(tmp_path):
    # What the autoscaler of this spec recorded: start-ups of 6 and 9 s, one idle drain of 4 s.
    state = tmp_path / "data" / "state"
    state.mkdir(parents=True)
    (state / "autoscaler-starts.jsonl").write_text(
        "".join(json.dumps({"queue": "default", "worker": "w", "at": 1, "startup_s": s}) + "\n" for s in (6, 9)))
    (state / "autoscaler-stops.jsonl").write_text(json.dumps({"reason": "drained", "drain_seconds": 4}) + "\n")
    path = spec_file(tmp_path)
    result = run(cli.app, ["plan", "-s", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "autoscaling.interval = 3 (measured)" in text
    assert "autoscaling.stabilization_window = 32 (measured)" in text  # 4 x 9 - 4
    assert "slowest of the last 2 measured worker start-ups 9.0 s" in text
    assert "median of the last 1 measured drains 4.0 s" in text and "drain-first" in text
    printed = json.loads(run(cli.app, ["plan", "-s", str(path), "--json"]).stdout)["autoscaling"]
    assert {s["key"]: (s["value"], s["source"]) for s in printed["settings"]}["stabilization_window"] == (32, "measured")


@pytest.mark.parametrize("command", ["validate", "plan", "up"])
def test_a_spec_too_large_for_this_machine_exits_2_before_anything_starts(tmp_path, monkeypatch, command):
    import airscale.tuning.cli as tuning_cli

    monkeypatch.setattr(tuning_cli, "total_memory_mib", lambda: 4096.0)  # a 4 GiB machine
    path = tmp_path / "airscale.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"name": "big", "data_dir": str(tmp_path / "data")},
                                    "queues": {"default": {"max_workers": 4, "concurrency": 16}}}))
    result = run(cli.app, [command, "-s", str(path)])
    # An AirscaleError: the CLI's entry point prints it and exits 2 (the integration test
    # test_autoscale.py runs the real command on a spec too large for the real machine).
    assert isinstance(result.exception, AirscaleError), result.output
    assert "queues.default: 4 workers x 16 slots" in str(result.exception) and "4.0 GiB" in str(result.exception)
    assert not (tmp_path / "data").exists()
