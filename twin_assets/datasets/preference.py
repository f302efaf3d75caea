"""Preference pairs for DPO: prompt, chosen = the author's verbatim extract, rejected = a generic
answer to the same prompt.

Who writes `rejected` is an explicit choice (`RejectedSource`), recorded in the card:
- "llm": the configured LLM (OpenAI-compatible server or local model),
- "base_model": the local base model the twin is fine-tuned from (TWIN_BASE_MODEL); DPO then
  teaches the model to prefer the author's voice over *its own* generic voice, which is the point,
- "offline-generic": a deterministic generic-answer template (no model at all),
- "auto": llm if configured, else base_model if it is on disk, else offline-generic.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from twin_assets.datasets import curation as cur
from twin_assets.datasets.extracts import Extract
from twin_assets.datasets.instruction import (
    BuiltDataset,
    CurationParams,
    Funnel,
    assign_isolated,
    curate_extracts,
    generate_instructions,
    plus_counts,
    split_and_decontaminate,
)
from twin_assets.datasets.offline import offline_generic_answer
from twin_assets.domain.datasets import PreferenceRow
from twin_assets.domain.documents import Category
from twin_assets.domain.features import CleanedDocument
from twin_assets.domain.generation import TextGenerator

ResolvedRejectedSource = Literal["llm", "base_model", "offline-generic"]
"""Who wrote the rejected answers of a dataset version (recorded in its card)."""
RejectedSource = Literal["auto", "llm", "base_model", "offline-generic"]
"""Who should write them; "auto" picks the first available (see the module docstring)."""
OFFLINE_GENERIC: ResolvedRejectedSource = "offline-generic"

# A plain assistant, asked to be brief: the generic voice DPO steers away from. Brevity keeps
# the pair inside DPO's max_length and local generation cheap; an answer cut off by the token
# cap is kept (its voice is what matters, and DPO truncates to max_length anyway).
REJECTED_SYSTEM = "You are a helpful assistant. Answer in at most 120 words."


class PreferenceParams(CurationParams):
    rejected_source: RejectedSource = "auto"
    min_rejected_chars: int = 80
    max_rejected_overlap: float = 0.3  # share of rejected's 5-grams found in chosen
    rejected_max_tokens: int = 192


def resolve_rejected_source(
    requested: RejectedSource,
    llm: TextGenerator,
    base_model: TextGenerator | None,
    base_model_path: str = "",
) -> tuple[ResolvedRejectedSource, TextGenerator | None]:
    """(source name, generator or None for offline-generic), failing loudly when an explicit
    choice cannot be honoured rather than silently switching generators.

    `llm`: a generator of the configured LLM (offline when none is configured), used only for
    the rejected answers, so its usage is metered apart from the prompts'; `base_model`: the
    local base model, None when it is not on disk (`base_model_path` names it in the error)."""
    if requested == "llm" or (requested == "auto" and llm.uses_llm):
        if not llm.uses_llm:
            raise ValueError("rejected_source='llm' but no LLM is configured (backend 'offline')")
        return "llm", llm
    if requested == "base_model" or (requested == "auto" and base_model is not None):
        if base_model is None:
            raise ValueError(
                f"rejected_source='base_model' but no base model at {base_model_path!r} "
                "(set TWIN_BASE_MODEL to an exported checkpoint)"
            )
        return "base_model", base_model
    return OFFLINE_GENERIC, None


_PROSE_END = re.compile(r"""[.!?:)"'*`…]$""")
_LIST_LINE = re.compile(r"^\s*([-*•]|\d+[.)])\s+")


def is_clean_extract(text: str, category: Category, source_texts: list[str]) -> bool:
    """Chosen must be the author's text verbatim (present in the cleaned document), with no
    boilerplate line, and (for prose) a complete ending, not cut mid-sentence."""
    # whitespace-insensitive: extracts re-join paragraphs with one blank line
    flat = " ".join(text.split())
    if not flat or not any(flat in " ".join(s.split()) for s in source_texts):
        return False
    if cur.boilerplate_ratio(text) > 0:
        return False
    if category == Category.REPOSITORIES:
        return True
    last = text.rstrip().splitlines()[-1]
    return bool(_PROSE_END.search(last.rstrip()) or _LIST_LINE.match(last))


def overlap(rejected: str, chosen: str, n: int = 5) -> float:
    grams = cur.ngrams(rejected, n)
    if not grams:
        return 0.0
    return len(grams & cur.ngrams(chosen, n)) / len(grams)


def preference_filter(
    rows: list[PreferenceRow], sources: dict[str, list[str]], params: PreferenceParams
) -> cur.StageResult[PreferenceRow]:
    """Drop degenerate pairs: empty, identical, too short, chosen not a clean extract, rejected
    copying chosen (then the pair teaches nothing about voice)."""
    kept: list[PreferenceRow] = []
    dropped: Counter[str] = Counter()
    for row in rows:
        if not row.prompt.strip() or not row.chosen.strip() or not row.rejected.strip():
            dropped["empty"] += 1
        elif cur.normalise(row.chosen) == cur.normalise(row.rejected):
            dropped["identical"] += 1
        elif len(row.rejected) < params.min_rejected_chars or len(row.chosen) < params.filters.min_chars:
            dropped["too_short"] += 1
        elif not is_clean_extract(row.chosen, row.category, sources.get(row.source_document_id, [])):
            dropped["chosen_not_clean_extract"] += 1
        elif overlap(row.rejected, row.chosen) > params.max_rejected_overlap:
            dropped["rejected_overlaps_chosen"] += 1
        else:
            kept.append(row)
    return cur.StageResult("pair_filter", kept, dropped)


def generate_rejected(
    pairs: list[tuple[Extract, str]],
    source: ResolvedRejectedSource,
    generator: TextGenerator | None,
    params: PreferenceParams,
    funnel: Funnel,
) -> list[PreferenceRow]:
    if generator is None:

        def answer(ps: list[tuple[Extract, str]]) -> list[str | None]:
            return [offline_generic_answer(p, e.category, params.seed) for e, p in ps]

    else:

        def answer(ps: list[tuple[Extract, str]]) -> list[str | None]:
            gens = generator.generate_many(
                [
                    [{"role": "system", "content": REJECTED_SYSTEM}, {"role": "user", "content": p}]
                    for _, p in ps
                ],
                max_tokens=params.rejected_max_tokens,
                allow_truncated=True,  # its voice is what DPO contrasts; training truncates anyway
            )
            return [g.text if g else None for g in gens]

    pairs, answers, failed = funnel.isolated("rejected", pairs, answer)
    rows = []
    skipped = 0
    for (e, prompt), rejected in zip(pairs, answers, strict=True):
        if rejected is None:
            skipped += 1
            continue
        rows.append(
            PreferenceRow(
                id=e.id,
                prompt=prompt,
                chosen=e.text,
                rejected=rejected,
                category=e.category,
                source_document_id=e.document_id,
                source_content_hash=e.content_hash,
            )
        )
    dropped = plus_counts({"generation_skipped": skipped} if skipped else {}, failed)
    funnel.record("rejected", len(rows), dropped or None)
    return rows


def document_texts(doc: CleanedDocument) -> list[str]:
    return [doc.content, *(f.content for f in doc.files)]


def build_preference_rows(
    docs: list[CleanedDocument],
    prompt_generator: TextGenerator,
    rejected_source: ResolvedRejectedSource,
    rejected_generator: TextGenerator | None,
    params: PreferenceParams | None = None,
) -> BuiltDataset:
    """The preference funnel: same extracts and prompts as the instruction dataset (so the two
    datasets agree on what was asked), then rejected answers, pair filters, the split,
    decontamination. The held-out documents are assigned from the cleaned documents before the
    funnel, exactly as `build_instruction_rows` does: with equal `params.split`, a document held
    out for evaluation is never a DPO training document, whichever pairs the filters drop."""
    params = params or PreferenceParams()
    funnel = Funnel()
    usable, assignment = assign_isolated(docs, params, funnel)
    extracts = curate_extracts(usable, params, funnel)
    pairs = generate_instructions(extracts, prompt_generator, params, funnel)
    rows = generate_rejected(pairs, rejected_source, rejected_generator, params, funnel)
    sources = {d.id: document_texts(d) for d in docs}
    _, r, failed = funnel.isolated("pair_filter", rows, lambda rs: preference_filter(rs, sources, params))
    funnel.record(r.name, len(r.kept), plus_counts(r.dropped, failed))
    train, test = split_and_decontaminate(r.kept, assignment, params, funnel, "chosen")
    name = rejected_source if rejected_generator is None else f"{rejected_source}:{rejected_generator.name}"
    return BuiltDataset(
        train=train,
        test=test,
        funnel=funnel,
        generator=f"prompts={prompt_generator.name}; rejected={name}",
        source_hashes=sorted({d.content_hash for d in docs}),
        split=assignment,
        failures=funnel.raise_if_every_document_failed(docs),
    )
