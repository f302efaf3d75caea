"""One evaluation run end to end, and the versioned report it leaves in the artifact store.

Layout: `evaluations/<author>/<version>/{report.json, report.md, report.png}` and the alias
`evaluations/<author>/aliases/latest.json`. The version is a hash of the evaluated model
versions, the data versions, the evaluation config and this package's code: a run whose version
is already stored loads that report and computes nothing (`load_report`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from twin_assets.domain.features import RetrievedChunk
from twin_assets.domain.stores import ArtifactStore, Embedder
from twin_assets.evaluation import scoring, text_metrics
from twin_assets.evaluation.config import EvaluationConfig
from twin_assets.evaluation.gate import GateVerdict, decide
from twin_assets.evaluation.judge import JudgeItem, JudgeResult, run_judge
from twin_assets.evaluation.models import BASE, ModelSet, ModelSpec
from twin_assets.evaluation.rag import (
    RagAnswer,
    RagJudge,
    RagPromptBuilder,
    RagQuestion,
    RagResult,
    Retriever,
    judge_answers,
    measure_retrieval,
    rag_messages,
)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
COLUMN_ORDER = ("base", "sft", "dpo", "production")


def evaluation_key(author: str, version: str | None = None) -> str:
    base = f"evaluations/{author}"
    return f"{base}/{version}" if version else base


def evaluation_code_version() -> str:
    """Hash of this package's code: a change in how anything is measured is a new report."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


class EvaluationInputs(BaseModel):
    """Everything a run evaluates, already resolved to local directories and plain rows."""

    author: str
    base_dir: str
    models: list[ModelSpec]  # distinct columns; "base" always first
    production: str | None = None  # the column holding the production alias (may be "dpo")
    instruction_test: list[dict] = Field(default_factory=list)  # instruction, output, source_document_id
    preference_test: list[dict] = Field(default_factory=list)  # prompt, chosen, rejected
    author_corpus: list[str] = Field(default_factory=list)  # the author's own texts (train split)
    system_prompt: str | None = None
    chat_template: str | None = None
    data_versions: dict[str, str] = Field(default_factory=dict)


class EvaluationReport(BaseModel):
    author: str
    version: str
    created_at: str
    config: dict
    models: list[dict]
    production: str | None
    rows: dict[str, dict]  # column -> metric -> value (None = not measured)
    samples: list[dict] = Field(default_factory=list)
    judge: JudgeResult
    rag: RagResult
    gate: GateVerdict
    data_versions: dict[str, str] = Field(default_factory=dict)
    seconds: dict[str, float] = Field(default_factory=dict)
    code_version: str = ""


def evaluation_version(inputs: EvaluationInputs, cfg: EvaluationConfig, extra: dict | None = None) -> str:
    payload = {
        "models": [(m.name, m.version) for m in inputs.models],
        "production": inputs.production,
        "data": inputs.data_versions,
        "config": cfg.model_dump(mode="json"),
        "system_prompt": inputs.system_prompt,
        "code": evaluation_code_version(),
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_report(artifacts: ArtifactStore, author: str, version: str) -> EvaluationReport | None:
    key = f"{evaluation_key(author, version)}/{REPORT_JSON}"
    if not artifacts.exists(key):
        return None
    return EvaluationReport.model_validate(artifacts.get_json(key))


def _messages(system: str | None, user: str, assistant: str | None = None) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": user})
    if assistant is not None:
        out.append({"role": "assistant", "content": assistant})
    return out


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb) if na and nb else 0.0


def run_evaluation(
    inputs: EvaluationInputs,
    cfg: EvaluationConfig,
    *,
    version: str,
    judge: object | None = None,
    embedder: Embedder | None = None,
    rag_questions: Sequence[RagQuestion] = (),
    rag_chunks: Sequence = (),
    retriever: Retriever | None = None,
    retriever_name: str = "",
    rag_judge: RagJudge | None = None,
    rag_prompt: RagPromptBuilder | None = None,
    rag_prompt_name: str = "",
    log: Callable[[str], None] = lambda _m: None,
) -> EvaluationReport:
    """Evaluate every column on the same held-out items; nothing here touches the store."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    models = ModelSet(inputs.base_dir, inputs.models, chat_template=inputs.chat_template)
    tok = models.tokenizer
    timings["load"] = time.perf_counter() - t0
    names = [m.name for m in inputs.models]
    rows: dict[str, dict] = {m.name: {"version": m.version, "label": m.label} for m in inputs.models}
    inst = sorted(inputs.instruction_test, key=lambda r: str(r.get("id", "")))[: cfg.max_items]
    pref = sorted(inputs.preference_test, key=lambda r: str(r.get("id", "")))[: cfg.max_items]

    def render(system: str | None, user: str, answer: str) -> tuple[str, str]:
        prompt = models.chat_prompt(_messages(system, user))
        return scoring.split_rendered(prompt, models.chat_full(_messages(system, user, answer)))

    # 1. held-out NLL of the author's own answers
    if cfg.runs("nll") and inst:
        t = time.perf_counter()
        pairs = [render(inputs.system_prompt, r["instruction"], r["output"]) for r in inst]
        for name in names:
            with models.use(name) as model:
                scores = scoring.answer_logprobs(
                    model, tok, pairs, batch_size=cfg.batch_size, max_length=cfg.max_length
                )
            nll = scoring.mean_nll(scores)
            rows[name].update(nll=nll, perplexity=scoring.perplexity(nll), nll_items=len(scores))
        timings["nll"] = time.perf_counter() - t
        log("NLL: " + ", ".join(f"{n}={rows[n]['nll']:.3f}" for n in names))

    # 2. preference accuracy (implicit DPO reward relative to the base model)
    if cfg.runs("preference") and pref:
        t = time.perf_counter()
        chosen = [render(inputs.system_prompt, r["prompt"], r["chosen"]) for r in pref]
        rejected = [render(inputs.system_prompt, r["prompt"], r["rejected"]) for r in pref]
        logps: dict[str, tuple[list, list]] = {}
        for name in names:
            with models.use(name) as model:
                c = scoring.answer_logprobs(
                    model, tok, chosen, batch_size=cfg.batch_size, max_length=cfg.max_length
                )
                r = scoring.answer_logprobs(
                    model, tok, rejected, batch_size=cfg.batch_size, max_length=cfg.max_length
                )
            logps[name] = (c, r)
            rows[name]["likelihood_preference"] = scoring.likelihood_preference(c, r)
        for name in names:
            if name == BASE:
                rows[name].update(preference_accuracy=None, reward_margin=None)
                continue
            stats = scoring.preference_stats(*logps[name], *logps[BASE], beta=cfg.dpo_beta)
            rows[name].update(stats)
        timings["preference"] = time.perf_counter() - t
        log(f"preference pairs scored in {timings['preference']:.1f}s")

    # 3. generations against the author's text
    samples: list[dict] = []
    answers: dict[str, list[str]] = {}
    if cfg.runs("generation") and inst:
        t = time.perf_counter()
        from twin_assets.evaluation.generation import generate_batched

        prompts = [models.chat_prompt(_messages(inputs.system_prompt, r["instruction"])) for r in inst]
        refs = [r["output"] for r in inst]
        author_profile = text_metrics.style_profile(inputs.author_corpus or refs)
        ref_vectors = embedder.embed(refs).tolist() if embedder is not None else None
        for name in names:
            with models.use(name) as model:
                gens = generate_batched(
                    model,
                    tok,
                    prompts,
                    eos_ids=models.eos_ids,
                    max_new_tokens=cfg.max_new_tokens,
                    batch_size=cfg.batch_size,
                    frequency_penalty=cfg.frequency_penalty,
                    presence_penalty=cfg.presence_penalty,
                )
            texts = [g.text for g in gens]
            answers[name] = texts
            row = rows[name]
            row["rouge_l"] = sum(text_metrics.rouge_l(a, b) for a, b in zip(texts, refs, strict=True)) / len(
                refs
            )
            row["chrf"] = sum(text_metrics.chrf(a, b) for a, b in zip(texts, refs, strict=True)) / len(refs)
            row["style_distance"] = text_metrics.style_distance(
                text_metrics.style_profile(texts), author_profile
            )
            row.update(text_metrics.degeneration(texts, [g.finished for g in gens]))
            row["degeneration_items"] = text_metrics.degeneration_items(texts)
            if ref_vectors is not None and embedder is not None:
                vecs = embedder.embed([x or " " for x in texts]).tolist()
                row["embedding_cosine"] = sum(
                    _cosine(a, b) for a, b in zip(vecs, ref_vectors, strict=True)
                ) / len(refs)
        for name in names:
            if name != BASE and "style_distance" in rows[BASE]:
                rows[name]["style_distance_vs_base"] = (
                    rows[name]["style_distance"] - rows[BASE]["style_distance"]
                )
        candidate = "dpo" if "dpo" in answers else "sft" if "sft" in answers else None
        for i, r in enumerate(inst[: cfg.samples]):
            sample = {"instruction": r["instruction"], "author": r["output"]}
            sample.update({name: answers[name][i] for name in names})
            samples.append(sample)
        timings["generation"] = time.perf_counter() - t
        log(f"answers generated and scored in {timings['generation']:.1f}s")
    else:
        candidate = None

    # 4. judge
    judge_result = JudgeResult(configured=False)
    if cfg.runs("judge") and judge is not None and candidate and BASE in answers:
        t = time.perf_counter()
        items = [
            JudgeItem(
                instruction=r["instruction"],
                reference=r["output"],
                answer=answers[candidate][i],
                base_answer=answers[BASE][i],
            )
            for i, r in enumerate(inst[: cfg.judge_items])
        ]
        judge_result = run_judge(judge, items)  # type: ignore[arg-type]
        if judge_result.configured:
            rows[candidate].update(
                judge_accuracy=judge_result.accuracy,
                judge_style=judge_result.style,
                judge_pairwise_win_rate=judge_result.pairwise_win_rate,
            )
        timings["judge"] = time.perf_counter() - t

    # 5. RAG
    rag_result = RagResult(configured=False, reason="not requested")
    if cfg.runs("rag"):
        t = time.perf_counter()
        rag_result, retrieved = measure_retrieval(rag_questions, rag_chunks, retriever, cfg.rag_k)
        rag_result.retriever = retriever_name
        timings["rag"] = time.perf_counter() - t
        if rag_judge is None:
            rag_result.judge_reason = "no judge LLM configured"
        elif embedder is None:
            rag_result.judge_reason = "no embedder (answer relevancy compares embeddings)"
        elif not retrieved:
            rag_result.judge_reason = "nothing was retrieved to answer from"
        elif cfg.rag_judge_items == 0:
            rag_result.judge_reason = "rag_judge_items is 0"
        else:
            t = time.perf_counter()
            _judge_rag_answers(
                rag_result,
                retrieved[: cfg.rag_judge_items],
                models=models,
                names=names,
                inputs=inputs,
                cfg=cfg,
                judge=rag_judge,
                embedder=embedder,
                prompt=rag_prompt,
                prompt_name=rag_prompt_name,
            )
            timings["rag_judge"] = time.perf_counter() - t
            log(
                f"RAG answers judged in {timings['rag_judge']:.1f}s: faithfulness="
                f"{fmt(rag_result.faithfulness)}, answer relevancy={fmt(rag_result.answer_relevancy)}, "
                f"{rag_result.judge_errors} errors"
            )

    gate = decide(rows, cfg, inputs.production)
    timings["total"] = time.perf_counter() - t0
    return EvaluationReport(
        author=inputs.author,
        version=version,
        created_at=datetime.now(UTC).isoformat(),
        config=cfg.model_dump(mode="json"),
        models=[m.model_dump(mode="json") for m in inputs.models],
        production=inputs.production,
        rows=rows,
        samples=samples,
        judge=judge_result,
        rag=rag_result,
        gate=gate,
        data_versions=inputs.data_versions,
        seconds={k: round(v, 2) for k, v in timings.items()},
        code_version=evaluation_code_version(),
    )


def _fit_rag_prompt(
    models: ModelSet,
    prompt: RagPromptBuilder,
    system: str | None,
    question: str,
    chunks: Sequence[RetrievedChunk],
    max_tokens: int,
) -> tuple[str, list[str]]:
    """The rendered RAG prompt within `max_tokens`, and the contexts that are actually in it.

    Lowest-ranked chunks are dropped first, then the last one kept is cut, so the system prompt
    and the question are never truncated away and faithfulness is judged against exactly the text
    the model saw."""
    tok = models.tokenizer
    kept = list(chunks)

    def render(cs: Sequence[RetrievedChunk]) -> str:
        return models.chat_prompt(prompt(system, question, cs))

    def size(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    text = render(kept)
    while len(kept) > 1 and size(text) > max_tokens:
        kept.pop()
        text = render(kept)
    if kept and size(text) > max_tokens:
        content = kept[0].content
        over = size(text) - max_tokens
        while over > 0 and content:
            content = content[: max(0, len(content) - max(over * 2, 16))]
            kept = [kept[0].model_copy(update={"content": content})]
            text = render(kept)
            over = size(text) - max_tokens
        kept = [c for c in kept if c.content]
        text = render(kept)
    return text, [c.content for c in kept]


def _judge_rag_answers(
    result: RagResult,
    retrieved: Sequence[tuple[RagQuestion, list[RetrievedChunk]]],
    *,
    models: ModelSet,
    names: Sequence[str],
    inputs: EvaluationInputs,
    cfg: EvaluationConfig,
    judge: RagJudge,
    embedder: Embedder,
    prompt: RagPromptBuilder | None,
    prompt_name: str,
) -> None:
    """The candidate answers the RAG questions from what was retrieved; ragas judges the answers."""
    from twin_assets.evaluation.generation import generate_batched

    candidate = "dpo" if "dpo" in names else "sft" if "sft" in names else BASE
    builder = prompt or rag_messages
    result.judge_configured = True
    result.judge = judge.name
    result.answer_model = candidate
    result.prompt = prompt_name or ("serving" if prompt is not None else "evaluation.rag.rag_messages")
    items = [(q, chunks) for q, chunks in retrieved if chunks]
    if not items:
        result.judge_reason = "no question retrieved any chunk"
        return
    fitted = [
        _fit_rag_prompt(models, builder, inputs.system_prompt, q.question, chunks, cfg.rag_max_prompt_tokens)
        for q, chunks in items
    ]
    with models.use(candidate) as model:
        gens = generate_batched(
            model,
            models.tokenizer,
            [text for text, _ in fitted],
            eos_ids=models.eos_ids,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.batch_size,
            max_prompt_tokens=cfg.rag_max_prompt_tokens,
            frequency_penalty=cfg.frequency_penalty,
            presence_penalty=cfg.presence_penalty,
        )
    answers = [
        RagAnswer(question=q.question, answer=g.text, contexts=contexts)
        for (q, _), (_, contexts), g in zip(items, fitted, gens, strict=True)
    ]
    result.judged_items = len(answers)
    try:
        judged = judge_answers(answers, judge, embedder)
    except Exception as exc:  # the judge could not even be set up: recorded, never a number
        result.judge_errors = len(answers)
        result.judge_error_reasons = {f"judge setup failed: {type(exc).__name__}": len(answers)}
        result.judge_error_examples = [str(exc)[:300]]
        return
    faith = [x for x in judged.faithfulness if x is not None]
    relevancy = [x for x in judged.answer_relevancy if x is not None]
    result.faithfulness = sum(faith) / len(faith) if faith else None
    result.faithfulness_items = len(faith)
    result.answer_relevancy = sum(relevancy) / len(relevancy) if relevancy else None
    result.answer_relevancy_items = len(relevancy)
    result.judge_errors = judged.errors
    result.judge_error_reasons = judged.error_reasons
    result.judge_error_examples = judged.error_examples
    result.samples = [
        {
            "question": a.question,
            "answer": a.answer,
            "contexts": a.contexts,
            "faithfulness": judged.faithfulness[i],
            "answer_relevancy": judged.answer_relevancy[i],
        }
        for i, a in enumerate(answers[: cfg.samples])
    ]


# -- rendering -----------------------------------------------------------------------------

TABLE_METRICS = (
    ("nll", "held-out NLL (lower is better)"),
    ("perplexity", "perplexity"),
    ("preference_accuracy", "preference accuracy (implicit reward vs base)"),
    ("reward_margin", "mean reward margin"),
    ("likelihood_preference", "likelihood prefers author's text"),
    ("rouge_l", "ROUGE-L F1"),
    ("chrf", "chrF"),
    ("embedding_cosine", "embedding cosine to author's answer"),
    ("style_distance", "style distance to author (lower is better)"),
    ("degeneration", "degeneration (lower is better)"),
    ("distinct_2", "distinct-2"),
    ("empty_rate", "empty answers"),
    ("truncated_rate", "truncated answers"),
    ("judge_accuracy", "judge: accuracy (1-5)"),
    ("judge_style", "judge: style (1-5)"),
    ("judge_pairwise_win_rate", "judge: sounds more like the author than base"),
)
JUDGE_METRICS = {"judge_accuracy", "judge_style", "judge_pairwise_win_rate"}


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def table_records(report: EvaluationReport) -> list[dict]:
    """One record per metric, one column per model: the table in JSON, Markdown and metadata."""
    cols = [c for c in COLUMN_ORDER if c in report.rows]
    out = []
    for key, label in TABLE_METRICS:
        if not any(key in report.rows[c] for c in cols) and key not in JUDGE_METRICS:
            continue
        record = {"metric": label}
        for c in cols:
            value = report.rows[c].get(key)
            if key in JUDGE_METRICS and not report.judge.configured:
                record[c] = "not configured"
            else:
                record[c] = fmt(value)
        out.append(record)
    return out


def _rag_judge_rows(rag: RagResult) -> str:
    """Faithfulness and answer relevancy: a number only when ragas produced one."""
    if not rag.judge_configured:
        note = rag.judge_note()
        return f"| faithfulness (ragas, judge) | {note} |\n| answer relevancy (ragas, judge) | {note} |\n"

    def cell(value: float | None, items: int) -> str:
        return f"{fmt(value)} (n={items})" if value is not None else rag.judge_note()

    return (
        f"| faithfulness (ragas, judge) | {cell(rag.faithfulness, rag.faithfulness_items)} |\n"
        f"| answer relevancy (ragas, judge) | {cell(rag.answer_relevancy, rag.answer_relevancy_items)} |\n"
    )


def render_markdown(report: EvaluationReport) -> str:
    cols = [c for c in COLUMN_ORDER if c in report.rows]
    head = (
        "| metric | "
        + " | ".join(f"{c} `{report.rows[c]['version'][:10]}`" for c in cols)
        + " |\n|---|"
        + "---:|" * len(cols)
        + "\n"
    )
    body = "".join(
        f"| {r['metric']} | " + " | ".join(r[c] for c in cols) + " |\n" for r in table_records(report)
    )
    gate = report.gate
    lines = [
        f"# Evaluation of {report.author}'s twin (`{report.version}`)\n",
        f"**Deploy gate: {'PASSED' if gate.passed else 'FAILED'}** - {gate.summary()}\n",
    ]
    lines += [f"- {f.describe()}" for f in gate.failures]
    lines += [f"- note: {n}" for n in gate.notes]
    prod = report.production or "none"
    lines.append(f"\nProduction alias: {prod}. Data: {json.dumps(report.data_versions)}\n")
    lines.append("## Models\n\n" + head + body)
    j = report.judge
    if j.configured:
        lines.append(
            f"## Judge ({j.judge})\n\n{j.items} items; errors: {j.errors} {json.dumps(j.error_reasons)}; "
            f"position bias: {fmt(j.position_bias)}\n"
        )
    else:
        lines.append("## Judge\n\nnot configured\n")
    rag = report.rag
    if rag.configured and rag.questions:
        lines.append(
            f"## RAG retrieval (k={rag.k}, {rag.questions} questions)\n\n| metric | value |\n|---|---:|\n"
            f"| hit rate@{rag.k} | {fmt(rag.hit_rate)} |\n| MRR | {fmt(rag.mrr)} |\n"
            f"| context precision (ragas, non-LLM) | {fmt(rag.context_precision)} |\n"
            f"| context recall (ragas, non-LLM) | {fmt(rag.context_recall)} |\n" + _rag_judge_rows(rag)
        )
        if rag.retriever:
            lines.append(f"Retriever under test: {rag.retriever}\n")
        if rag.judge_configured:
            lines.append(
                f"Judge: {rag.judge}; answers by the {rag.answer_model} model with prompt "
                f"{rag.prompt}; {rag.judged_items} answers, faithfulness scored on "
                f"{rag.faithfulness_items}, answer relevancy on {rag.answer_relevancy_items}; "
                f"errors: {rag.judge_errors} {json.dumps(rag.judge_error_reasons)}\n"
            )
    else:
        lines.append(f"## RAG retrieval\n\nnot measured: {rag.reason or 'no questions'}\n")
    if report.samples:
        lines.append("## Samples\n")
        for i, s in enumerate(report.samples, 1):
            lines.append(f"### {i}. {s['instruction']}\n")
            for who in ("author", *cols):
                if who in s:
                    text = (s[who] or "(empty)").replace("\n", " ")
                    lines.append(f"- **{who}**: {text[:400]}")
            lines.append("")
    lines.append(f"\nSeconds: {json.dumps(report.seconds)}\n")
    return "\n".join(lines)


def render_png(report: EvaluationReport) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in COLUMN_ORDER if c in report.rows]
    panels = [
        k
        for k in ("nll", "preference_accuracy", "rouge_l", "style_distance", "degeneration")
        if any(isinstance(report.rows[c].get(k), float) for c in cols)
    ]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.2 * max(1, len(panels)), 3))
    axes = axes if hasattr(axes, "__len__") else [axes]
    for ax, key in zip(axes, panels, strict=False):
        values = [report.rows[c].get(key) for c in cols]
        ax.bar(cols, [v if isinstance(v, float) and not math.isnan(v) else 0.0 for v in values])
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{report.author}: gate {'passed' if report.gate.passed else 'FAILED'}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def save_report(artifacts: ArtifactStore, report: EvaluationReport) -> str:
    """Plot and Markdown first, the JSON last: a version with report.json is complete."""
    key = evaluation_key(report.author, report.version)
    artifacts.put_bytes(f"{key}/{REPORT_PNG}", render_png(report))
    artifacts.put_bytes(f"{key}/{REPORT_MD}", render_markdown(report).encode())
    artifacts.put_json(f"{key}/{REPORT_JSON}", json.loads(report.model_dump_json()))
    artifacts.write_alias(evaluation_key(report.author), "latest", report.version)
    return artifacts.uri(key)
