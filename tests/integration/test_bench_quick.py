"""`airscale bench --quick`: both clusters come up, every task of every scenario succeeds on
both (chain, fan-out, a 5-file parse pass, a 5-DAG profile for 10 s), and the report carries
the figures (correctness only: no timing assertion). Uses the bench's ports 29800 (stock) and
29900 (tuned)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Two clusters and every scenario: minutes; `make bench` measures with the same code.
pytestmark = [pytest.mark.integration, pytest.mark.long]
OFFSET = int(os.environ.get("AIRSCALE_TEST_PORT_OFFSET", "0"))  # see conftest.py


@pytest.mark.timeout(900)
def test_quick_bench():
    work = Path(tempfile.mkdtemp(prefix="airscale-benchq-", dir="/tmp"))
    os.chmod(work, 0o755)
    root, out = work / "clusters", work / "out"
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "airscale"), "bench", "--quick", "--root", str(root),
             "--out", str(out), "--stock-port", str(29800 + OFFSET), "--tuned-port", str(29900 + OFFSET)],
            capture_output=True, text=True, timeout=850, env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        report = (out / "bench-report.md").read_text()
        for name, n in (("chain-5", 5), ("fanout-10", 10)):
            assert f"## {name}" in report
            assert f"| tasks succeeded | {n}/{n} | {n}/{n} |" in report
        # The tuned cluster really ran with the plan's settings.
        assert "| scheduler.scheduler_idle_sleep_time | 1.0 | 0.2 |" in report
        # airscale's accelerators ran on the tuned cluster only: its scheduler waited for database
        # events (pacing is the fallback, not installed beside it) and its worker's pool processes
        # parsed DAG files for the tasks they forked (the chain and the fan-out alone are 15
        # tasks; a pool process parses a file once).
        acc = re.search(r"- tuned: scheduler event wake-up (on|off); scheduler pacing (on|off); worker warm-up "
                        r"(on|off); DAG files parsed by worker pool processes: (\d+)", report)
        assert acc and acc.groups()[:3] == ("on", "off", "on") and int(acc.group(4)) >= 1, report
        assert re.search(r"- stock: scheduler event wake-up off; scheduler pacing off; worker warm-up off; DAG files "
                         r"parsed by worker pool processes: 0 ", report), report
        # Figures are numbers, not placeholders.
        row = re.search(r"\| task-to-task gap p50, s \| ([0-9.]+) \| ([0-9.]+) \|", report)
        assert row, report
        assert "idle scheduler: stock" in proc.stdout
        # Scheduler loop durations arrived over statsd from both clusters.
        row = re.search(r"\| scheduler loop p50, ms \| ([0-9.]+) \| ([0-9.]+) \|", report)
        assert row, report
        # The tiny parse pass and profile ran on both clusters and every file / task made it.
        for variant in ("stock", "tuned"):
            assert re.search(rf"\| 5 \| {variant} \| \d \| [0-9.]+ \| [0-9.]+ \|", report), report
        assert "| tasks succeeded | 20/20 | 20/20 |" in report
        assert "| backlog when the window closed, tasks |" in report
        # Both clusters were stopped and their data removed.
        assert not any(root.glob("*/postgres"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
