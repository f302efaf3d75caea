"""Instruction back-translation: the author's own extract is the answer; the instruction is what a
reader would have asked to get it (from the LLM when configured, else the offline generator).

Why back-translation rather than LLM-written answers: the fine-tuning targets must stay in the
author's voice. The LLM only ever writes the *question*.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from twin_assets.datasets import curation as cur
from twin_assets.datasets.extracts import Extract, ExtractParams, extract_all
from twin_assets.datasets.offline import offline_instructions
from twin_assets.datasets.splitting import SplitParams, assign_documents, split_key, split_rows
from twin_assets.domain.datasets import DocumentSplit, InstructionRow
from twin_assets.domain.documents import Category
from twin_assets.domain.features import CleanedDocument
from twin_assets.domain.generation import Message, TextGenerator


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
    """Rows left after each stage, in order, and why the others were dropped."""

    stages: dict[str, int] = Field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = Field(default_factory=dict)

    def record(self, name: str, kept: int, dropped: Counter[str] | dict[str, int] | None = None):
        self.stages[name] = kept
        if dropped:
            self.dropped[name] = {k: int(v) for k, v in sorted(dropped.items()) if v}


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
    extracts = extract_all(docs, params.extract)
    funnel.record("extracts", len(extracts))

    def text(e: Extract) -> str:
        return e.text

    r = cur.rule_filter(extracts, text, params.filters)
    funnel.record(r.name, len(r.kept), r.dropped)
    r = cur.exact_dedup(r.kept, text)
    funnel.record(r.name, len(r.kept), r.dropped)
    r = cur.near_dedup(
        r.kept, text, params.near_dup_threshold, params.minhash_num_perm, params.minhash_shingle
    )
    funnel.record(r.name, len(r.kept), r.dropped)
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
        gens = generator.generate_many(
            [instruction_messages(e) for e in extracts], json_keys=["instruction"], max_tokens=200
        )
        raw = [
            (e, str(g.data["instruction"]).strip() if g and g.data else None)
            for e, g in zip(extracts, gens, strict=True)
        ]
    else:
        raw = list(zip(extracts, offline_instructions(extracts, params.seed), strict=True))  # one spaCy batch
    out: list[tuple[Extract, str]] = []
    for e, instruction in raw:
        if instruction is None:
            dropped["generation_skipped"] += 1
            continue
        reason = _valid_instruction(instruction, e, params.max_instruction_chars)
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
    if generator.uses_llm and params.use_llm_judge and rows:
        scorer = f"llm-judge:{generator.name}"
        gens = generator.generate_many(
            [cur.judge_messages(r.instruction, r.output) for r in rows],
            json_keys=["score"],
            max_tokens=120,
        )
        judged = [cur.parse_judge_score(g.data if g else None) for g in gens]
    scored = []
    fallbacks = 0
    for row, j in zip(rows, judged, strict=True):
        if j is None:
            if scorer != "heuristic":
                fallbacks += 1
            j = cur.heuristic_quality(row.instruction, row.output, row.category)
        scored.append(row.model_copy(update={"quality": j}))
    r = cur.quality_filter(scored, lambda x: x.quality, params.quality_threshold)
    dropped = Counter(r.dropped)
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
    r = cur.decontaminate(
        train,
        test,
        lambda x: [getattr(x, answer_field)],
        params.decontamination_ngram,
        params.decontamination_max_shared,
    )
    funnel.record(r.name, len(r.kept) + len(test), r.dropped)
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


def build_instruction_rows(
    docs: list[CleanedDocument], generator: TextGenerator, params: CurationParams | None = None
) -> BuiltDataset:
    """The whole instruction funnel for one author's cleaned documents. The held-out documents
    are assigned first, from the documents alone, so the preference dataset (same call, same
    `params.split`) holds out the same ones whatever either funnel drops."""
    params = params or CurationParams()
    assignment = assign_documents(docs, params.split)
    funnel = Funnel()
    extracts = curate_extracts(docs, params, funnel)
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
    return BuiltDataset(
        train=train,
        test=test,
        funnel=funnel,
        generator=generator.name,
        scorer=scorer,
        source_hashes=sorted({d.content_hash for d in docs}),
        split=assignment,
    )
