"""The soak report: markdown (complete on its own) plus PNG plots when matplotlib is installed
(the `bench` extra), like the benchmark report (airscale.bench.report)."""

from __future__ import annotations

import statistics
from pathlib import Path

from airscale.soak import verdict
from airscale.soak.runner import SoakResult

BUCKET_S = 60.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def buckets(points: list[tuple[float, float]], t0: float, width: float = BUCKET_S) -> list[tuple[float, list[float]]]:
    """(minute after t0, values) of points grouped in windows of `width` seconds (pure)."""
    out: dict[int, list[float]] = {}
    for at, v in points:
        out.setdefault(int((at - t0) // width), []).append(v)
    return [(k * width / 60.0, out[k]) for k in sorted(out)]


def longest_outage(probes: list[verdict.ProbeObs], endpoint: str) -> float:
    """Longest stretch (seconds) from a failed probe to the next answered one (pure)."""
    mine = sorted((p for p in probes if p.endpoint == endpoint), key=lambda p: p.at)
    worst, since = 0.0, None
    for p in mine:
        if not p.ok and since is None:
            since = p.at
        elif p.ok and since is not None:
            worst = max(worst, p.at - since)
            since = None
    if since is not None and mine:
        worst = max(worst, mine[-1].at - since)
    return worst


def markdown(r: SoakResult, v: verdict.Verdict, command: str, plots: list[str]) -> str:
    t0 = r.started
    lines = [
        "# airscale soak report", "",
        f"Command: `{command}`  ",
        (f"Seed: {r.seed}; load {r.info.get('tasks_per_s', 0):.2f} tasks/s for {(r.load_end - t0) / 60:.1f} min "
         f"(warm-up {(r.warmup_end - t0) / 60:.1f} min), drained {(r.ended - r.load_end) / 60:.1f} min; "
         f"cluster {r.info.get('cluster')}: {r.info.get('schedulers')} schedulers, "
         f"{r.info.get('api_servers')} api-server(s)."), "",
        f"**Verdict: {'PASS' if v.passed else 'FAIL'}**", "",
        "| check | result | detail |", "|---|---|---|",
        *[f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.detail} |" for c in v.checks], "",
        "## Availability of each probed endpoint", "",
        "| endpoint | probes | answered (200) | within 2 s | p50 | p99 | max | longest outage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in sorted({p.endpoint for p in r.probes}):
        mine = [p for p in r.probes if p.endpoint == e]
        lat = [p.latency_s for p in mine]
        ok = sum(1 for p in mine if p.ok)
        within, n = verdict.availability(r.probes, e)
        lines.append(f"| {e} | {n} | {ok / n:.3%} | {within / n:.3%} | {_pct(lat, 0.5):.3f} s | "
                     f"{_pct(lat, 0.99):.3f} s | {max(lat):.2f} s | {longest_outage(r.probes, e):.1f} s |")
    lines += ["", "## Faults", "",
              "| at (min) | fault | component | what | recovered after |", "|---|---|---|---|---|"]
    for f in r.faults:
        rec = f"{f.recovery_s:.1f} s" if f.recovery_s is not None else "**not recovered**"
        lines.append(f"| {(f.at - t0) / 60:.1f} | {f.kind} | {f.component} | {f.detail} | {rec} |")
    if r.skipped:
        lines += ["", "Planned but not injected: " + "; ".join(
            f"{p.kind} at {p.at_s / 60:.1f} min ({why})" for p, why in r.skipped)]
    rec = [f.recovery_s for f in r.faults if f.recovery_s is not None]
    if rec:
        lines += ["", f"Recovery: median {statistics.median(rec):.1f} s, longest {max(rec):.1f} s."]
    if r.restarts:
        lines += ["", "Restarts by the supervisor's restart listener: " + ", ".join(
            f"{n} +{c}" for n, c in sorted(r.restarts.items()))]
    lines += ["", "## DAG runs and task instances", "",
              (f"{len(r.triggered)} runs triggered and confirmed, {len(r.trigger_failures)} triggers that failed "
               "after retries; in the database: " + ", ".join(
                   f"{s} {sum(1 for x in r.run_states.values() if x == s)}" for s in sorted(set(r.run_states.values())))),
              "", "| final state | try number | task instances |", "|---|---|---|"]
    for (state, tn), n in sorted(verdict.by_state_and_try(r.latest).items()):
        lines.append(f"| {state} | {tn} | {n} |")
    lines += ["", f"{len(r.earlier)} earlier tries were retried (task_instance_history)."]
    lines += ["", "## Queue wait over time", "", "| minute | tasks started | p50 | p95 | max |", "|---|---|---|---|---|"]
    for minute, vals in buckets(r.queue_waits, t0):
        lines.append(f"| {minute:.0f} | {len(vals)} | {_pct(vals, 0.5):.2f} s | {_pct(vals, 0.95):.2f} s | "
                     f"{max(vals):.2f} s |")
    growth = verdict.memory_growth(r.samples, r.warmup_end, r.warmup_end - r.started)
    lines += ["", "## Memory (PSS of each component's process tree)", "",
              ("From the end of warm-up (median of the first samples after it) to the end (median of the last "
               "samples), whichever process holds the component at each end; and each of its processes that "
               "lived long enough (a quarter of the time after warm-up), a restarted one from a warm-up of its "
               "own after its start (a fresh process fills its caches again). The table shows the largest "
               "growth of these."), "",
              "| component | measured from | to | start | end | growth |", "|---|---|---|---|---|---|"]
    for c, g in sorted(growth.items()):
        lines.append(f"| {c} | {(g.since - t0) / 60:.1f} min | {(g.until - t0) / 60:.1f} min | {g.base_mib:.0f} MiB "
                     f"| {g.final_mib:.0f} MiB | {g.share:+.1%} |")
    for c, g in sorted(growth.items()):
        seg = [s for s in r.samples if s.component == c and g.since <= s.at <= g.until and s.segment_mib > 0]
        if seg:
            lines += ["", f"{c}: left out above, the PSS in PostgreSQL's shared buffers segment (a region of fixed "
                      f"size mapped at start, filled as the database touches pages): {seg[0].segment_mib:.0f} MiB "
                      f"-> {seg[-1].segment_mib:.0f} MiB; the whole tree {seg[0].pss_mib:.0f} -> "
                      f"{seg[-1].pss_mib:.0f} MiB."]
    missing = sorted({s.component for s in r.samples} - set(growth))
    if missing:
        lines += ["", f"Not measured (too few samples after warm-up): {', '.join(missing)}."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def plots(r: SoakResult, out_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: list[str] = []
    t0 = r.started

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        made.append(str(out_dir / name))

    fig, ax = plt.subplots(figsize=(10, 4))
    for e in sorted({p.endpoint for p in r.probes}):
        mine = sorted((p for p in r.probes if p.endpoint == e), key=lambda p: p.at)
        ax.plot([(p.at - t0) / 60 for p in mine], [p.latency_s if p.ok else float("nan") for p in mine],
                ".", markersize=2, label=f"{e} latency")
        bad = [p for p in mine if not p.ok]
        ax.plot([(p.at - t0) / 60 for p in bad], [verdict.ANSWER_WITHIN_S] * len(bad), "x", label=f"{e} not answered")
    for f in r.faults:
        ax.axvline((f.at - t0) / 60, color="red", alpha=0.3)
    ax.set_xlabel("minutes"), ax.set_ylabel("seconds"), ax.set_yscale("log")
    ax.set_title("Probe latency (red lines: faults)"), ax.legend(fontsize=7)
    save(fig, "soak-probes.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    waits = buckets(r.queue_waits, t0)
    ax.plot([m for m, _ in waits], [_pct(v, 0.5) for _, v in waits], label="p50")
    ax.plot([m for m, _ in waits], [_pct(v, 0.95) for _, v in waits], label="p95")
    for f in r.faults:
        ax.axvline((f.at - t0) / 60, color="red", alpha=0.3)
    ax.set_xlabel("minutes"), ax.set_ylabel("queue wait (s)"), ax.set_title("Queue wait per minute"), ax.legend()
    save(fig, "soak-queue-wait.png")

    fig, ax = plt.subplots(figsize=(10, 5))
    for c in sorted({s.component for s in r.samples}):
        mine = sorted((s for s in r.samples if s.component == c), key=lambda s: s.at)
        ax.plot([(s.at - t0) / 60 for s in mine], [s.pss_mib for s in mine], label=c)
    ax.axvline((r.warmup_end - t0) / 60, color="black", linestyle="--", alpha=0.5)
    ax.set_xlabel("minutes"), ax.set_ylabel("PSS (MiB)"), ax.set_title("Memory per component (dashed: end of warm-up)")
    ax.legend(fontsize=6, ncol=3)
    save(fig, "soak-memory.png")
    return made


def write_report(r: SoakResult, v: verdict.Verdict, out_dir: Path, command: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = plots(r, out_dir)
    (out_dir / "soak-result.json").write_text(r.to_json())
    path = out_dir / "soak-report.md"
    path.write_text(markdown(r, v, command, made))
    return path
