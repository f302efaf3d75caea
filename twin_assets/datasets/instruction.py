"""Instruction back-translation: the author's own extract is the answer; the instruction is what a
reader would have asked to get it (from the LLM when configured, else the offline generator).

Why back-translation rather than LLM-written answers: the fine-tuning targets must stay in the
author's voice. The LLM only ever writes the *question*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel, Field

from twin_assets.datasets import curation as cur
from twin_assets.datasets.extracts import Extract, ExtractParams, extract_all
from twin_assets.datasets.isolation import EveryDocumentFailed, run_isolated, with_links
from twin_assets.datasets.offline import offline_instructions
from twin_assets.datasets.splitting import SplitParams, assign_documents, split_key, split_rows
from twin_assets.domain.datasets import DocumentSplit, InstructionRow
from twin_assets.domain.documents import Category
from twin_assets.domain.features import CleanedDocument, DocumentFailure
from twin_assets.domain.generation import Message, TextGenerator

T = TypeVar("T")
R = TypeVar("R")


class CurationParams(BaseModel):
    """Every knob of the funnel; stored in the card so a version says how it was made."""

    extract: ExtractParams = Field(default_factory=ExtractParams)
    filters: cur.FilterParams = Field(default_factory=cur.FilterParams)
    near_dup_threshold: float = 0.7
    minhash_num_perm: int = 128
    minhash_shingle: int = 5
    # which documents are held out: decided from the cleaned documents before the funnel, the
    # same for both datasets when this is equal (see twin_assets.datasets.splitting)
    split: SplitParams = Field(default_factory=SplitParams)
    decontamination_ngram: int = 8
    decontamination_max_shared: int = 0
    quality_threshold: float = 0.45
    use_llm_judge: bool = True
    max_instruction_chars: int = 400
    max_rows: int = 0  # cap on candidates sent to generation (cost control); 0 = no cap
    seed: int = 0


class Funnel(BaseModel):
    """Rows left after each stage, in order, and why the others were dropped; plus the
    documents and extracts skipped because processing them raised (`failures`), and which
    extracts each document gave (`extracted`), to tell a document that failed as a whole."""

    stages: dict[str, int] = Field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = Field(default_factory=dict)
    failures: list[DocumentFailure] = Field(default_factory=list)
    extracted: dict[str, list[str]] = Field(default_factory=dict)

    def record(self, name: str, kept: int, dropped: Counter[str] | dict[str, int] | None = None):
        self.stages[name] = kept
        if dropped:
            self.dropped[name] = {k: int(v) for k, v in sorted(dropped.items()) if v}

    def isolated(
        self, stage: str, items: Sequence[T], run: Callable[[list[T]], R]
    ) -> tuple[list[T], R, Counter[str]]:
        """`run(items)` with the items that raise on their own skipped and recorded (see
        `twin_assets.datasets.isolation`): (items run, result, {"failed": n} to add to the
        stage's dropped counts)."""
        before = len(self.failures)
        kept, result = run_isolated(stage, items, run, self.failures)
        return kept, result, Counter({"failed": len(self.failures) - before})

    def failed_documents(self) -> set[str]:
        """Documents that failed as a whole: at extraction (or before), or every extract."""
        whole = {f.document_id for f in self.failures if not f.extract_id}
        bad = {f.extract_id for f in self.failures if f.extract_id}
        return whole | {d for d, ids in self.extracted.items() if ids and set(ids) <= bad}

    def every_document_failed(self) -> bool:
        """Some failed, and no document that gave anything to work on got through whole."""
        if not self.failures:
            return False
        involved = {d for d, ids in self.extracted.items() if ids} | {f.document_id for f in self.failures}
        return involved <= self.failed_documents()

    def raise_if_every_document_failed(self, docs: Sequence[CleanedDocument]) -> list[DocumentFailure]:
        """The failures (with links); `EveryDocumentFailed` when nothing useful is left."""
        failures = with_links(self.failures, docs)
        if self.every_document_failed():
            raise EveryDocumentFailed(failures)
        return failures


INSTRUCTION_SYSTEM = (
    "You reconstruct the request behind a piece of writing. Given a text written by an author, "
    "write the single instruction a reader would give a writing assistant so that this exact text "
    "is the ideal answer. Be specific to the text's topic and points, phrase it as a natural "
    "request (e.g. 'Write a LinkedIn post about ...'), do not quote the text, and do not mention "
    'the author. Reply with JSON only: {"instruction": "..."}'
)
_KIND_HINT = {
    Category.ARTICLES: "a section of a technical article",
    Category.POSTS: "a social media (LinkedIn) post",
    Category.REPOSITORIES: "code or documentation from a software repository",
}


def plus_counts(dropped: Counter[str] | dict[str, int], more: Counter[str]) -> Counter[str]:
    """`dropped` with `more`'s positive counts added (Counter's `+` would also drop its zeros)."""
    out = Counter(dropped)
    for k, v in more.items():
        if v:
            out[k] += v
    return out


def instruction_messages(e: Extract) -> list[Message]:
    context = [f"Kind: {_KIND_HINT[e.category]}"]
    if e.title:
        context.append(f"Title: {e.title}")
    if e.heading:
        context.append(f"Section/symbol: {e.heading}")
    return [
        {"role": "system", "content": INSTRUCTION_SYSTEM},
        {"role": "user", "content": "\n".join(context) + f"\n\nText:\n{e.text}"},
    ]


def curate_extracts(docs: list[CleanedDocument], params: CurationParams, funnel: Funnel) -> list[Extract]:
    """Stages 0-3: cut extracts, rule filter, exact and near de-duplication (all on the author's
    text, before any generation is paid for)."""
    _, extracts, failed = funnel.isolated("extraction", docs, lambda ds: extract_all(ds, params.extract))
    for e in extracts:
        funnel.extracted.setdefault(e.document_id, []).append(e.id)
    funnel.record(
        "extracts", len(extracts), {"failed_documents": failed["failed"]} if failed["failed"] else None
    )

    def text(e: Extract) -> str:
        return e.text

    _, r, failed = funnel.isolated(
        "rule_filter", extracts, lambda xs: cur.rule_filter(xs, text, params.filters)
    )
    funnel.record(r.name, len(r.kept), plus_counts(r.dropped, failed))
    _, r, failed = funnel.isolated("exact_dedup", r.kept, lambda xs: cur.exact_dedup(xs, text))
    funnel.record(r.name, len(r.kept), plus_counts(r.dropped, failed))
    _, r, failed = funnel.isolated(
        "near_dedup",
        r.kept,
        lambda xs: cur.near_dedup(
            xs, text, params.near_dup_threshold, params.minhash_num_perm, params.minhash_shingle
        ),
    )
    funnel.record(r.name, len(r.kept), plus_counts(r.dropped, failed))
    kept = r.kept
    if params.max_rows and len(kept) > params.max_rows:
        kept = sorted(kept, key=lambda e: split_key(e.id, params.seed))[: params.max_rows]
        kept = sorted(kept, key=lambda e: (e.document_id, e.id))
        funnel.record("max_rows", len(kept), {"over_cap": len(r.kept) - len(kept)})
    return kept


def _valid_instruction(instruction: str, e: Extract, max_chars: int) -> str | None:
    """Reason to reject a generated instruction, or None when it is usable."""
    if not instruction.strip():
        return "empty_instruction"
    if len(instruction) > max_chars:
        return "instruction_too_long"
    if len(cur.ngrams(instruction, 8) & cur.ngrams(e.text, 8)) > 0:
        return "instruction_quotes_answer"
    return None


def generate_instructions(
    extracts: list[Extract], generator: TextGenerator, params: CurationParams, funnel: Funnel
) -> list[tuple[Extract, str]]:
    """(extract, instruction) pairs; LLM outputs that are unusable are dropped and counted."""
    dropped: Counter[str] = Counter()
    if generator.uses_llm:

        def generate(xs: list[Extract]) -> list[str | None]:
            gens = generator.generate_many(
                [instruction_messages(e) for e in xs], json_keys=["instruction"], max_tokens=200
            )
            return [str(g.data["instruction"]).strip() if g and g.data else None for g in gens]

    else:

        def generate(xs: list[Extract]) -> list[str | None]:
            return list(offline_instructions(xs, params.seed))  # one spaCy batch

    done, instructions, failed = funnel.isolated("generation", extracts, generate)
    dropped = plus_counts(dropped, failed)
    skipped = sum(1 for i in instructions if i is None)
    if skipped:
        dropped["generation_skipped"] += skipped
    candidates = [(e, i) for e, i in zip(done, instructions, strict=True) if i is not None]
    checked, reasons, failed = funnel.isolated(
        "generation",
        candidates,
        lambda ps: [_valid_instruction(i, e, params.max_instruction_chars) for e, i in ps],
    )
    dropped = plus_counts(dropped, failed)
    out: list[tuple[Extract, str]] = []
    for (e, instruction), reason in zip(checked, reasons, strict=True):
        if reason:
            dropped[reason] += 1
            continue
        out.append((e, instruction))
    funnel.record("instructions", len(out), dropped)
    return out


def score_rows(
    rows: list[InstructionRow], generator: TextGenerator, params: CurationParams, funnel: Funnel
) -> tuple[list[InstructionRow], str]:
    """Quality score on every row (LLM judge when configured and enabled, heuristics otherwise or
    when the judge's answer is unusable), then the threshold. Returns (kept rows, scorer name)."""
    judged: list[float | None] = [None] * len(rows)
    scorer = "heuristic"
    failed: Counter[str] = Counter()
    if generator.uses_llm and params.use_llm_judge and rows:
        scorer = f"llm-judge:{generator.name}"

        def judge(rs: list[InstructionRow]) -> list[float | None]:
            gens = generator.generate_many(
                [cur.judge_messages(r.instruction, r.output) for r in rs],
                json_keys=["score"],
                max_tokens=120,
            )
            return [cur.parse_judge_score(g.data if g else None) for g in gens]

        rows, judged, failed = funnel.isolated("quality", rows, judge)

    def score(pairs: list[tuple[InstructionRow, float | None]]) -> list[InstructionRow]:
        return [
            row.model_copy(
                update={
                    "quality": cur.heuristic_quality(row.instruction, row.output, row.category)
                    if j is None
                    else j
                }
            )
            for row, j in pairs
        ]

    _, scored, failed_heuristic = funnel.isolated("quality", list(zip(rows, judged, strict=True)), score)
    fallbacks = 0 if scorer == "heuristic" else sum(1 for j in judged if j is None)
    r = cur.quality_filter(scored, lambda x: x.quality, params.quality_threshold)
    dropped = plus_counts(plus_counts(r.dropped, failed), failed_heuristic)
    if fallbacks:
        dropped["judge_unusable_scored_by_heuristic"] = fallbacks
    funnel.record(r.name, len(r.kept), dropped)
    return r.kept, scorer


def split_and_decontaminate(
    rows: list,
    assignment: DocumentSplit,
    params: CurationParams,
    funnel: Funnel,
    answer_field: str,
) -> tuple[list, list]:
    """Every row to its document's side of the shared assignment, then 8-gram decontamination
    of train against test: with whole documents held out, what it still catches is one document
    quoting another (a post quoting an article, a README pasted into a post)."""
    split = split_rows(rows, assignment)
    train, test = split.train, split.test
    funnel.record("split", len(train) + len(test))
    _, r, failed = funnel.isolated(
        "decontamination",
        train,
        lambda tr: cur.decontaminate(
            tr,
            test,
            lambda x: [getattr(x, answer_field)],
            params.decontamination_ngram,
            params.decontamination_max_shared,
        ),
    )
    funnel.record(r.name, len(r.kept) + len(test), plus_counts(r.dropped, failed))
    funnel.record("train", len(r.kept))
    funnel.record("test", len(test))
    return r.kept, test


class BuiltDataset(BaseModel):
    train: list
    test: list
    funnel: Funnel
    generator: str
    scorer: str = ""
    source_hashes: list[str]
    split: DocumentSplit | None = None  # the document assignment the rows were split by
    failures: list[DocumentFailure] = Field(default_factory=list)  # skipped documents/extracts


def assign_isolated(docs: list[CleanedDocument], params: CurationParams, funnel: Funnel):
    """(documents the split could be decided on, the assignment): a document whose weighing
    raises is skipped (recorded in the funnel) instead of sinking the author's datasets; both
    builders call this with the same documents, so they still agree."""
    kept, assignment, _ = funnel.isolated("split", docs, lambda ds: assign_documents(ds, params.split))
    return kept, assignment


def build_instruction_rows(
    docs: list[CleanedDocument], generator: TextGenerator, params: CurationParams | None = None
) -> BuiltDataset:
    """The whole instruction funnel for one author's cleaned documents. The held-out documents
    are assigned first, from the documents alone, so the preference dataset (same call, same
    `params.split`) holds out the same ones whatever either funnel drops."""
    params = params or CurationParams()
    funnel = Funnel()
    usable, assignment = assign_isolated(docs, params, funnel)
    extracts = curate_extracts(usable, params, funnel)
    pairs = generate_instructions(extracts, generator, params, funnel)
    rows = [
        InstructionRow(
            id=e.id,
            instruction=instruction,
            output=e.text,
            category=e.category,
            source_document_id=e.document_id,
            source_content_hash=e.content_hash,
        )
        for e, instruction in pairs
    ]
    rows, scorer = score_rows(rows, generator, params, funnel)
    train, test = split_and_decontaminate(rows, assignment, params, funnel, "output")
    failures = funnel.raise_if_every_document_failed(docs)
    return BuiltDataset(
        train=train,
        test=test,
        funnel=funnel,
        generator=generator.name,
        scorer=scorer,
        source_hashes=sorted({d.content_hash for d in docs}),
        split=assignment,
        failures=failures,
    )
