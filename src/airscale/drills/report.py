"""The markdown report of `airscale drill all` (pure: verdicts in, text out)."""

from __future__ import annotations

from airscale.drills.verdict import Verdict


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def markdown(verdicts: list[Verdict], command: str, context: str = "") -> str:
    lines = [
        "# airscale drill report",
        "",
        f"Reproduce: `{command}`",
        "",
    ]
    if context:
        lines += [context, ""]
    lines += [
        "| drill | verdict | runs ok | runs lost/stuck | tasks lost/stuck | tasks hit by fault | "
        "next task done (s) | interrupted tasks done (s) | component healthy (s) | restarts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        restarts = ", ".join(f"{k} +{n}" for k, n in v.restarts.items()) or "none"
        lines.append(
            f"| {v.scenario} | {'PASS' if v.passed else 'FAIL'} | {v.runs_succeeded}/{v.runs_total} | "
            f"{v.runs_lost}/{v.runs_stuck} | {v.tasks_lost}/{v.tasks_stuck} | {v.tasks_hit} | "
            f"{_s(v.recovery_s)} | {_s(v.interrupted_done_s)} | {_s(v.component_back_s)} | {restarts} |"
        )
    lines += ["", "## Faults", ""]
    for v in verdicts:
        standing = f" (still firing from before: {', '.join(v.alerts_standing)})" if v.alerts_standing else ""
        lines.append(f"- **{v.scenario}**: {v.fault_detail}; alerts fired: {', '.join(v.alerts) or 'none'}{standing}")
        for r in v.reasons:
            lines.append(f"  - failed: {r}")
    lines.append("")
    return "\n".join(lines)
