"""The deploy gate: may the candidate (DPO, else SFT) replace what is deployed?

It passes only if (1) it beats the base model's held-out NLL by `nll_margin` and does not
degenerate more than the base model beyond `degeneration_tolerance`, and (2) against the current
production model (when there is one and it is another version) it does not regress beyond the
tolerances on NLL, preference accuracy, degeneration and, when a judge ran for both, the
judge's style score. Every failure names the metric and both values.

Degeneration is scored per answer on the same prompts for every model, and a few held-out
prompts are all a small author has: one answer that falls into a loop moves the mean by more
than the tolerance. So where the per-answer scores are known, the gate pairs them and fails on
degeneration only when the mean increase exceeds the tolerance AND a paired bootstrap says the
increase is not noise (its one-sided 95% lower bound is above zero). A damaged model degenerates
on most prompts and still fails; an increase carried by a single answer is reported in the
verdict's notes instead.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from pydantic import BaseModel, Field

from twin_assets.evaluation.config import EvaluationConfig


class GateFailure(BaseModel):
    metric: str
    against: str  # base | production
    candidate: float
    reference: float
    rule: str

    def describe(self) -> str:
        return (
            f"{self.metric}: candidate {self.candidate:.4f} vs {self.against} {self.reference:.4f} "
            f"({self.rule})"
        )


class GateVerdict(BaseModel):
    candidate: str  # column name (dpo | sft) or "" when there is nothing to gate
    candidate_version: str = ""
    passed: bool
    failures: list[GateFailure] = Field(default_factory=list)
    compared_with_production: bool = False
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        if not self.candidate:
            return "no candidate model to gate"
        head = f"{self.candidate} {self.candidate_version}: {'PASSED' if self.passed else 'FAILED'}"
        return head if self.passed else head + " - " + "; ".join(f.describe() for f in self.failures)


def _num(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


BOOTSTRAP_SAMPLES = 2000


def paired_lower_bound(candidate: Sequence[float], reference: Sequence[float], q: float = 0.05) -> float:
    """One-sided (1 - q) lower bound of the mean paired difference candidate - reference, by a
    seeded bootstrap over the pairs (deterministic: the same scores give the same verdict)."""
    diffs = [c - r for c, r in zip(candidate, reference, strict=True)]
    if not diffs:
        return float("nan")
    rng = random.Random(0)
    n = len(diffs)
    means = sorted(sum(rng.choice(diffs) for _ in range(n)) / n for _ in range(BOOTSTRAP_SAMPLES))
    return means[int(q * BOOTSTRAP_SAMPLES)]


def _items(row: dict, key: str) -> list[float] | None:
    value = row.get(key)
    return [float(v) for v in value] if isinstance(value, list) and value else None


def decide(rows: dict[str, dict], cfg: EvaluationConfig, production: str | None) -> GateVerdict:
    """`rows`: column name -> metric name -> value (the report's model table)."""
    candidate = "dpo" if "dpo" in rows else "sft" if "sft" in rows else ""
    if not candidate:
        return GateVerdict(candidate="", passed=False, notes=["no SFT or DPO model was evaluated"])
    cand = rows[candidate]
    failures: list[GateFailure] = []
    notes: list[str] = []

    def check(metric: str, against: str, worse_if: str, slack: float, rule: str) -> None:
        c, r = _num(cand, metric), _num(rows[against], metric)
        if c is None or r is None:
            notes.append(f"{metric} vs {against}: not measured")
            return
        bad = c > r + slack if worse_if == "higher" else c < r - slack
        items_c, items_r = _items(cand, f"{metric}_items"), _items(rows[against], f"{metric}_items")
        if bad and worse_if == "higher" and items_c and items_r and len(items_c) == len(items_r):
            low = paired_lower_bound(items_c, items_r)
            if not low > 0:
                notes.append(
                    f"{metric}: candidate {c:.4f} vs {against} {r:.4f} exceeds the tolerance "
                    f"{slack}, but not significantly over {len(items_c)} paired answers "
                    f"(95% lower bound of the increase {low:+.4f}): not a failure"
                )
                return
        if bad:
            failures.append(GateFailure(metric=metric, against=against, candidate=c, reference=r, rule=rule))

    if "base" in rows:
        check("nll", "base", "higher", -cfg.nll_margin, f"must be at least {cfg.nll_margin} below the base")
        if _num(cand, "nll") is None:
            failures.append(
                GateFailure(
                    metric="nll",
                    against="base",
                    candidate=float("nan"),
                    reference=float("nan"),
                    rule="held-out NLL was not measured",
                )
            )
        check(
            "degeneration",
            "base",
            "higher",
            cfg.degeneration_tolerance,
            f"may exceed the base by at most {cfg.degeneration_tolerance}",
        )
    compared = production is not None and production in rows and production != candidate
    if compared:
        assert production is not None
        check(
            "nll",
            production,
            "higher",
            cfg.nll_tolerance,
            f"may exceed production by at most {cfg.nll_tolerance}",
        )
        check(
            "preference_accuracy",
            production,
            "lower",
            cfg.preference_tolerance,
            f"may fall below production by at most {cfg.preference_tolerance}",
        )
        check(
            "degeneration",
            production,
            "higher",
            cfg.degeneration_tolerance,
            f"may exceed production by at most {cfg.degeneration_tolerance}",
        )
        if _num(cand, "judge_style") is not None and _num(rows[production], "judge_style") is not None:
            check(
                "judge_style",
                production,
                "lower",
                cfg.judge_tolerance,
                f"may fall below production by at most {cfg.judge_tolerance}",
            )
    elif production is None:
        notes.append("no production model yet: only compared with the base model")
    return GateVerdict(
        candidate=candidate,
        candidate_version=str(cand.get("version", "")),
        passed=not failures,
        failures=failures,
        compared_with_production=compared,
        notes=notes,
    )
