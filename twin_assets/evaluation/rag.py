"""RAG quality of the retrieval function the endpoint uses, measured offline.

The evaluation set is the held-out instruction split: each question (the instruction) was
written from one source document, so the chunks of that document are the relevant ones. Scores:
hit rate@k (a relevant chunk among the top k), MRR (1/rank of the first relevant chunk), and
ragas' context precision / recall in their non-LLM variants (string similarity of retrieved
contexts against the reference contexts). Faithfulness and answer relevancy need a judge LLM and
are not computed here (reported as "not configured").
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

from twin_assets.domain.features import Chunk, RetrievedChunk

Retriever = Callable[[str, int], list[RetrievedChunk]]


class RagQuestion(BaseModel):
    question: str
    source_document_id: str


class RagResult(BaseModel):
    configured: bool
    reason: str = ""
    questions: int = 0
    k: int = 0
    hit_rate: float | None = None
    mrr: float | None = None
    context_precision: float | None = None  # ragas NonLLMContextPrecisionWithReference
    context_recall: float | None = None  # ragas NonLLMContextRecall
    errors: dict[str, int] = Field(default_factory=dict)


def _ragas_metrics():
    """Imported on use: ragas phones home unless told not to, and must never download anything."""
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.dataset_schema import SingleTurnSample
        from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall

    return SingleTurnSample, NonLLMContextPrecisionWithReference(), NonLLMContextRecall()


def evaluate_retrieval(
    questions: Sequence[RagQuestion], chunks: Sequence[Chunk], retrieve: Retriever | None, k: int
) -> RagResult:
    if retrieve is None:
        return RagResult(configured=False, reason="no retriever configured")
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_doc.setdefault(chunk.document_id, []).append(chunk)
    usable = [q for q in questions if q.source_document_id in by_doc and q.question.strip()]
    if not usable:
        return RagResult(
            configured=True, reason="no held-out question has chunks of its source document", k=k
        )
    sample_cls, precision, recall = _ragas_metrics()
    hits, ranks, precisions, recalls = [], [], [], []
    errors: dict[str, int] = {}
    for q in usable:
        relevant = {c.id for c in by_doc[q.source_document_id]}
        # a hit is a chunk of the source document: by chunk id, or by document id for an index
        # whose point ids are not the warehouse's chunk ids
        try:
            got = retrieve(q.question, k)
        except Exception as exc:  # one failing query is recorded, the rest still count
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        rank = next(
            (
                i
                for i, r in enumerate(got, 1)
                if r.chunk_id in relevant or r.document_id == q.source_document_id
            ),
            None,
        )
        hits.append(rank is not None)
        ranks.append(1.0 / rank if rank else 0.0)
        reference = [c.content for c in sorted(by_doc[q.source_document_id], key=lambda c: c.position)]
        retrieved = [r.content for r in got]
        if retrieved:
            sample = sample_cls(
                user_input=q.question, retrieved_contexts=retrieved, reference_contexts=reference
            )
            precisions.append(float(precision.single_turn_score(sample)))
            recalls.append(float(recall.single_turn_score(sample)))
        else:
            precisions.append(0.0)
            recalls.append(0.0)

    def mean(xs: Sequence[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return RagResult(
        configured=True,
        questions=len(hits),
        k=k,
        hit_rate=mean([float(h) for h in hits]),
        mrr=mean(ranks),
        context_precision=mean(precisions),
        context_recall=mean(recalls),
        errors=errors,
    )
