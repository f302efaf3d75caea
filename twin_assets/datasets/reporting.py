"""Asset metadata for a dataset version: the funnel, a preview and length distributions, as
markdown the Dagster UI renders."""

from __future__ import annotations

import statistics

from twin_assets.datasets.instruction import Funnel


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def funnel_markdown(funnel: Funnel) -> str:
    lines = ["| stage | rows | dropped (reason: count) |", "|---|---:|---|"]
    for stage, n in funnel.stages.items():
        reasons = ", ".join(f"{k}: {v}" for k, v in funnel.dropped.get(stage, {}).items())
        lines.append(f"| {stage} | {n} | {reasons} |")
    return "\n".join(lines)


def preview_markdown(rows: list, fields: list[str], n: int = 5) -> str:
    if not rows:
        return "_no rows_"
    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    for row in rows[:n]:
        lines.append("| " + " | ".join(_cell(getattr(row, f)) for f in fields) + " |")
    return "\n".join(lines)


def length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "n": len(values),
        "min": min(values),
        "p25": q[0],
        "median": q[1],
        "p75": q[2],
        "max": max(values),
        "mean": round(statistics.fmean(values), 1),
    }


def length_markdown(rows: list, fields: list[str]) -> str:
    lines = [
        "| field (chars) | n | min | p25 | median | p75 | max | mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in fields:
        s = length_stats([len(getattr(r, f)) for r in rows])
        if s["n"]:
            lines.append(
                f"| {f} | {s['n']} | {s['min']} | {s['p25']:.0f} | {s['median']:.0f} | "
                f"{s['p75']:.0f} | {s['max']} | {s['mean']} |"
            )
    return "\n".join(lines)


def category_counts(rows: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[str(r.category)] = out.get(str(r.category), 0) + 1
    return dict(sorted(out.items()))
