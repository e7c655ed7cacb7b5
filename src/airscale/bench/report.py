"""The benchmark report: markdown with figures side by side, plus PNG plots when matplotlib
is installed (optional: the report is complete without them)."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

from airscale.bench.metrics import RunFigures, percentile
from airscale.bench.results import BenchResult
from airscale.bench.specs import VARIANTS


def _med(runs: list[RunFigures], f) -> float:
    vals = [f(r) for r in runs]
    vals = [v for v in vals if not (isinstance(v, float) and math.isnan(v))]
    return median(vals) if vals else math.nan


def _fmt(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def summary(result: BenchResult) -> dict[str, dict[str, dict[str, float]]]:
    """scenario -> variant -> figure -> value: medians over rounds; gap and wait percentiles over
    all tasks of all rounds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for s in result.config.scenarios:
        out[s.name] = {}
        for v in VARIANTS:
            rs = [r for r in result.runs if r.scenario == s.name and r.variant == v]
            gaps = [g for r in rs for g in r.gaps]
            waits = [w for r in rs for w in r.queue_waits]
            loops = [x for r in rs for x in r.loop_ms]
            out[s.name][v] = {
                "wall_s": _med(rs, lambda r: r.wall_s),
                "throughput": _med(rs, lambda r: r.throughput),
                "gap_p50": percentile(gaps, 50), "gap_p95": percentile(gaps, 95),
                "wait_p50": percentile(waits, 50), "wait_p95": percentile(waits, 95),
                "loop_p50": percentile(loops, 50), "loop_p95": percentile(loops, 95),
                "scheduler_cpu_s": _med(rs, lambda r: r.scheduler_cpu_s),
                "cpu_per_task": _med(rs, lambda r: r.cpu_per_task),
                "succeeded": sum(r.succeeded for r in rs), "tasks": sum(r.tasks for r in rs),
            }
    return out


ROWS = [
    ("wall time, s", "wall_s", "lower"),
    ("throughput, tasks/s", "throughput", "higher"),
    ("task-to-task gap p50, s", "gap_p50", "lower"),
    ("task-to-task gap p95, s", "gap_p95", "lower"),
    ("queue wait p50, s", "wait_p50", "lower"),
    ("queue wait p95, s", "wait_p95", "lower"),
    ("scheduler loop p50, ms", "loop_p50", "lower"),
    ("scheduler loop p95, ms", "loop_p95", "lower"),
    ("scheduler CPU, s", "scheduler_cpu_s", "lower"),
    ("cluster CPU per task, s", "cpu_per_task", "lower"),
]


def ratio(stock: float, tuned: float, better: str) -> float:
    """How many times better tuned is (>1 = tuned better)."""
    if any(math.isnan(x) for x in (stock, tuned)) or stock <= 0 or tuned <= 0:
        return math.nan
    return stock / tuned if better == "lower" else tuned / stock


def markdown(result: BenchResult, command: str, plots: list[str]) -> str:
    cfg = result.config
    summ = summary(result)
    started = datetime.fromtimestamp(result.started, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    try:
        from importlib.metadata import version
        af = version("apache-airflow")
    except Exception:
        af = "?"
    lines = [
        "# airscale bench: stock Airflow settings vs airscale's plan",
        "",
        f"- command: `{command}`",
        f"- when: {started}, {result.finished - result.started:.0f} s in all",
        f"- machine: {os.cpu_count()} cores, {mem:.1f} GiB, {platform.platform()}, load average at the "
        f"end {', '.join(f'{x:.1f}' for x in os.getloadavg())} (shared with other clusters)",
        f"- Airflow {af}, CeleryExecutor, 1 scheduler, 1 Celery worker x {cfg.concurrency} slots "
        f"in both clusters; {cfg.rounds} round(s), order alternating per round",
        "",
        "## Settings that differ (tuned = `airscale plan` of the bench profile)",
        "",
        "| setting | stock | tuned |",
        "|---|---|---|",
    ]
    from airscale.tuning.planner import STOCK

    for section, values in result.plan_settings.items():
        for k, v in values.items():
            st = STOCK.get((section, k), "?")
            lines.append(f"| {section}.{k} | {'unset' if st is None else st} | {v} |")
    lines.append("| celery.result_backend | metadata database (Airflow's default) | the broker's Redis "
                 "(spec `broker.result_backend`) |")
    lines += ["", "The `airscale.*` settings turn on airscale's accelerators (scheduler event wake-up or "
              "pacing, worker DAG cache: airscale.runtime.airflow_entry); stock has them off, which is Airflow's own behaviour.",
              "", "PostgreSQL settings of the plan apply to the tuned cluster's database too. The tuned "
              "cluster also keeps the settings airscale derives for every cluster (crash recovery: "
              "task heartbeat timeout, retries, Celery visibility timeout).", "",
              "Stock: every setting airscale derives beyond what a cluster needs to run (executor, "
              "paths, URLs, secrets, ports, load_examples off) is put back to Airflow's default: "
              + ", ".join(f"{sec}.{k} = {v}" for sec, vals in result.stock_restored.items() for k, v in vals.items())
              + "." + (f" Left as airscale sets them (no Airflow default to restore): {', '.join(result.stock_left)}."
                       if result.stock_left else ""),
              "Both clusters run without the autoscaler and the monitoring stack.", ""]
    for s in cfg.scenarios:
        sm = summ[s.name]
        lines += [f"## {s.name} ({s.kind} of {s.tasks} trivial tasks)", "",
                  "| figure (median of rounds) | stock | tuned | tuned better by |", "|---|---|---|---|"]
        for label, key, better in ROWS:
            if s.kind != "chain" and key.startswith("gap"):
                continue
            st, tu = sm["stock"][key], sm["tuned"][key]
            r = ratio(st, tu, better)
            lines.append(f"| {label} | {_fmt(st)} | {_fmt(tu)} | {_fmt(r, 2) + 'x' if not math.isnan(r) else '-'} |")
        lines.append(f"| tasks succeeded | {sm['stock']['succeeded']}/{sm['stock']['tasks']} | "
                     f"{sm['tuned']['succeeded']}/{sm['tuned']['tasks']} | |")
        lines += ["", "Where the CPU went (seconds per task, median of rounds):", "",
                  "| component | stock | tuned |", "|---|---|---|"]
        kinds = sorted({k for r in result.runs if r.scenario == s.name for k in r.cpu_by_kind})
        for k in kinds:
            vals = {v: _med([r for r in result.runs if r.scenario == s.name and r.variant == v],
                            lambda r, k=k: r.cpu_by_kind.get(k, 0.0) / r.tasks if r.tasks else math.nan)
                    for v in VARIANTS}
            lines.append(f"| {k} | {_fmt(vals['stock'], 3)} | {_fmt(vals['tuned'], 3)} |")
        lines += ["", "Per round (wall s, stock -> tuned, ratio):", ""]
        for rnd in range(1, cfg.rounds + 1):
            pair = {r.variant: r for r in result.runs if r.scenario == s.name and r.round == rnd}
            if len(pair) == 2:
                a, b = pair["stock"].wall_s, pair["tuned"].wall_s
                lines.append(f"- round {rnd}: {_fmt(a)} -> {_fmt(b)} ({_fmt(ratio(a, b, 'lower'))}x)")
        lines.append("")
    lines += ["## Quiet cluster", "",
              f"Share of one core the scheduler uses with nothing to run ({cfg.idle_seconds:.0f} s):", ""]
    for v in VARIANTS:
        loops = result.idle_loop_ms.get(v, [])
        lines.append(f"- {v}: {result.idle_share.get(v, math.nan) * 100:.1f} %, {len(loops)} scheduler loops, "
                     f"loop p50 {_fmt(percentile(loops, 50), 1)} ms")
    tasks_run = {v: sum(r.tasks for r in result.runs if r.variant == v) for v in VARIANTS}
    lines += ["", "## airscale's accelerators, as each cluster's logs report them", ""]
    for v in VARIANTS:
        a = result.accelerators.get(v)
        if a is not None:
            lines.append(f"- {v}: scheduler event wake-up {'on' if a.event_wakeup else 'off'}; scheduler pacing "
                         f"{'on' if a.pacing else 'off'}; worker warm-up {'on' if a.worker_warmup else 'off'}; "
                         "DAG files parsed by worker "
                         f"pool processes: {a.dag_file_parses} (tasks run: {tasks_run[v]} measured + warm-up"
                         f"{' + parse and profile runs' if result.loads else ''}; without the cache every task "
                         "process parses its DAG file)")
    lines += density_section(result) + parse_section(result) + folder_section(result) + profile_section(result)
    lines += ["", "## How the figures are taken", "",
              "- wall time: first task queued to last task ended (task_instance.queued_dttm, end_date).",
              "- gap: a chained task's start_date minus its predecessor's end_date.",
              "- queue wait: start_date minus queued_dttm.",
              "- scheduler loop: Airflow's statsd timer `scheduler.scheduler_loop_duration` (one value "
              "per scheduler loop, ms), sent by both clusters to a listener in the bench process, "
              "taken from the trigger of a run to its end.",
              "- CPU: psutil user+system time of the component processes and all descendants "
              "(task processes included), before and after the run; 'cluster' counts every "
              "component (PostgreSQL, Redis, api-server, scheduler, dag-processor, triggerer, worker).",
              "- The other cluster stays up (idle) while one runs, and other engineers' clusters share "
              "the machine: compare the ratios of one run, not absolute figures across runs.", ""]
    for p in plots:
        lines += [f"![{Path(p).stem}]({Path(p).name})", ""]
    return "\n".join(lines)


def parse_section(result: BenchResult) -> list[str]:
    if not result.parses:
        return []
    lines = ["", "## Parsing many DAG files", "",
             "One pass of the dag-processor over N generated DAG files (5 tasks each, hourly schedule, "
             "paused; the first 500 are the profile's DAGs): the dag-processor is stopped, the files "
             "written, the dag-processor started; *pass* is the first to the last DAG stored "
             "(dag.last_parsed_time), *cold* adds the process start-up. *within* compares the pass "
             "with the cluster's `min_file_process_interval`: a longer pass means every file is "
             "always due, the processor never rests and each file is re-parsed less often than "
             "configured. One cluster at a time, "
             f"{result.config.many_first} first; the other's Airflow processes are idle or stopped meanwhile. "
             "The machine's load average is beside each pass: other engineers' clusters share it.", "",
             "| files | cluster | processes | pass, s | cold, s | s per file (x processes) | "
             "dag-processor CPU, s | reported pass, s | interval, s | within | machine load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(result.parses, key=lambda f: (f.files, VARIANTS.index(f.variant))):
        lines.append(f"| {f.files} | {f.variant} | {f.processes} | {_fmt(f.pass_s, 1)} | {_fmt(f.cold_s, 1)} | "
                     f"{_fmt(f.seconds_per_file, 3)} | {_fmt(f.cpu_s, 1)} | {_fmt(f.reported_pass_s, 1)} | "
                     f"{f.interval_s:.0f} | {'yes' if f.within_interval else 'no'} | "
                     f"{_fmt(f.load_avg[0], 1)} -> {_fmt(f.load_avg[1], 1)} |")
    lines += ["", "*reported pass*: the dag-processor's own `dag_processing.total_parse_time` (statsd) for "
              "the first full pass after its start, where it sent one.", ""]
    return lines


def density_section(result: BenchResult) -> list[str]:
    if not result.density:
        return []
    from airscale.bench.scenarios import SLEEP_S

    lines = ["", "## Memory per running task", "",
             f"Each cluster's one Celery worker, warm, is measured idle and then with every slot running a "
             f"task that sleeps {SLEEP_S} s (3 s after the last one started): summed PSS of the worker's "
             "process tree (its pool processes, their task processes, the log server), which counts a page "
             "shared by n processes 1/n to each. *tasks per GiB* = running tasks x 1024 / busy MiB.", "",
             "| cluster | slots | running | idle, MiB | busy, MiB | + per running task, MiB | tasks per GiB |",
             "|---|---|---|---|---|---|---|"]
    by = {d.variant: d for d in result.density}
    for d in sorted(result.density, key=lambda d: VARIANTS.index(d.variant)):
        lines.append(f"| {d.variant} | {d.slots} | {d.running} | {d.idle_mib:.0f} | {d.busy_mib:.0f} | "
                     f"{_fmt(d.per_task_mib, 1)} | {_fmt(d.tasks_per_gib, 1)} |")
    if "stock" in by and "tuned" in by and by["stock"].tasks_per_gib:
        lines += ["", f"tuned / stock tasks per GiB: {by['tuned'].tasks_per_gib / by['stock'].tasks_per_gib:.2f}x"]
    return lines + [""]


def folder_section(result: BenchResult) -> list[str]:
    if not result.folders:
        return []
    from airscale.bench.profile import FolderFigures

    lines = ["", "## A large DAG folder at rest, then edited", "",
             "After the largest pass, each cluster's dag-processor is left with its files unchanged: "
             "*quiet CPU* is its process tree's CPU over the window, in share of one core. Then one file "
             "is edited a few times (a tag added: its serialized DAG changes), each edit timed from the "
             "write to its new version in `serialized_dag`, and a new file is timed to its DAG's row. "
             "airscale watches the folder (`[airscale] dag_folder_watch`, airscale.runtime.dag_watch); "
             "stock polls it. Targets: quiet CPU <= "
             f"{FolderFigures.QUIET_TARGET:.0%} of a core, every edit <= {FolderFigures.EDIT_TARGET_S:g} s.", "",
             "| cluster | files | quiet CPU, share of a core (over s) | edit -> serialized, s | new file -> parsed, s "
             "| min_file_process_interval, s | refresh_interval, s | targets |",
             "|---|---|---|---|---|---|---|---|"]
    for f in sorted(result.folders, key=lambda f: VARIANTS.index(f.variant)):
        lines.append(f"| {f.variant} | {f.files} | {f.quiet_cpu_share:.1%} ({f.quiet_s:.0f}) | "
                     f"{', '.join(_fmt(x, 1) for x in f.edit_s)} | {_fmt(f.new_file_s, 1)} | "
                     f"{f.interval_s:.0f} | {f.refresh_s:.0f} | {'met' if f.met else 'not met'} |")
    return lines + [""]


def profile_section(result: BenchResult) -> list[str]:
    if not result.loads or result.config.load is None:
        return []
    ld = result.config.load
    lines = ["", f"## {ld.dags} DAGs / {ld.tasks_per_day:,} tasks a day, compressed {ld.compression:g}x", "",
             f"{ld.dags} DAGs of 5 tasks (extract >> 3 transforms >> load), each every "
             f"{ld.period_s / 60:.0f} min: {ld.tasks_per_day:,} tasks a day. Played {ld.compression:g} times "
             f"faster for {ld.window_s:.0f} s: a run triggered (REST) every {1 / ld.run_rate:.2f} s, "
             f"round-robin over the DAGs ({ld.task_rate:.2f} tasks/s offered), one cluster at a time, "
             f"{result.config.many_first} first; then the cluster drains. *kept up*: every task succeeded and the "
             "tasks not finished when the window closed are at most 30 s of offered work.", "",
             "| figure | stock | tuned |", "|---|---|---|"]
    by = {f.variant: f for f in result.loads}
    st, tu = by.get("stock"), by.get("tuned")

    def row(label: str, f) -> None:
        lines.append(f"| {label} | {f(st) if st else '-'} | {f(tu) if tu else '-'} |")

    row("offered, tasks (tasks/s)", lambda x: f"{x.offered_tasks} ({_fmt(x.offered_rate)})")
    row("achieved in the window, tasks/s", lambda x: _fmt(x.achieved_rate))
    row("backlog when the window closed, tasks", lambda x: str(x.backlog_at_end))
    row("drain after the window, s", lambda x: _fmt(x.drain_s, 1))
    row("queue wait p50 / p95, s", lambda x: f"{_fmt(percentile(x.queue_waits, 50))} / {_fmt(percentile(x.queue_waits, 95))}")
    row("run duration p50 / p95, s", lambda x: f"{_fmt(percentile(x.run_seconds, 50))} / {_fmt(percentile(x.run_seconds, 95))}")
    row("scheduler loop p50 / p95, ms", lambda x: f"{_fmt(percentile(x.loop_ms, 50), 1)} / {_fmt(percentile(x.loop_ms, 95), 1)}")
    row("cluster CPU per task, s", lambda x: _fmt(sum(x.cpu_by_kind.values()) / x.offered_tasks if x.offered_tasks else math.nan, 3))
    row("dag-processor CPU, s", lambda x: _fmt(x.cpu_by_kind.get("dag-processor", math.nan), 1))
    row("tasks succeeded", lambda x: f"{x.succeeded}/{x.offered_tasks}")
    row("trigger loop behind schedule at most, s", lambda x: _fmt(x.trigger_lag_s))
    row("kept up", lambda x: "yes" if x.kept_up else "no")
    row("machine load (1 min) at start -> end", lambda x: f"{_fmt(x.load_avg[0], 1)} -> {_fmt(x.load_avg[1], 1)}")
    return lines + [""]


def plots(result: BenchResult, out_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    summ = summary(result)
    colours = {"stock": "#999999", "tuned": "#1f77b4"}
    names = [s.name for s in result.config.scenarios]

    def save(fig, fname: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        made.append(str(out_dir / fname))

    def bars(labels: list[str], value: Callable[[str, int], float], title: str, fname: str) -> None:
        """Stock and tuned side by side for each label; value(variant, label index)."""
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for i, v in enumerate(("stock", "tuned")):
            vals = [value(v, j) for j in range(len(labels))]
            ax.bar([x + i * 0.38 for x in range(len(labels))], vals, width=0.38, label=v, color=colours[v])
        ax.set_xticks([x + 0.19 for x in range(len(labels))], labels)
        ax.set_title(title)
        ax.legend()
        save(fig, fname)

    for key, title, fname in (("wall_s", "wall time (s), lower is better", "bench-wall.png"),
                              ("throughput", "throughput (tasks/s), higher is better", "bench-throughput.png")):
        bars(names, lambda v, j, key=key: summ[names[j]][v][key], title, fname)
    chains = [s for s in result.config.scenarios if s.kind == "chain"]
    if chains:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for v in ("stock", "tuned"):
            gaps = sorted(g for r in result.runs if r.variant == v and r.scenario == chains[0].name for g in r.gaps)
            if gaps:
                ax.plot(gaps, [(i + 1) / len(gaps) for i in range(len(gaps))], label=v, color=colours[v])
        ax.set_xlabel("task-to-task gap in the chain (s)")
        ax.set_ylabel("share of gaps")
        ax.set_title(f"{chains[0].name}: gap distribution")
        ax.legend()
        save(fig, "bench-gaps.png")
    if result.parses:
        counts = sorted({f.files for f in result.parses})
        bars([f"{n} files" for n in counts],
             lambda v, j: next((f.pass_s for f in result.parses if f.variant == v and f.files == counts[j]), math.nan),
             "one parse pass (s), lower is better", "bench-parse.png")
    loops = {v: [x for r in result.runs if r.variant == v for x in r.loop_ms] for v in ("stock", "tuned")}
    if any(loops.values()):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for v, xs in loops.items():
            xs = sorted(xs)
            if xs:
                ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=v, color=colours[v])
        ax.set_xscale("log")
        ax.set_xlabel("scheduler loop duration (ms), chain and fan-out runs")
        ax.set_ylabel("share of loops")
        ax.legend()
        save(fig, "bench-loops.png")
    return made


def write_report(result: BenchResult, out_dir: Path, command: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = plots(result, out_dir)
    path = out_dir / "bench-report.md"
    path.write_text(markdown(result, command, made))
    return path
