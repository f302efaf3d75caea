"""One bad document never sinks an author's dataset: every funnel stage runs isolated.

Why a wrapper around whole stages rather than a try/except inside each: the stages are batch
functions (one spaCy `pipe`, one LLM `generate_many`, de-duplication that compares items with
each other), so an exception says only that *some* item broke the batch. `run_isolated` runs the
stage as usual and, only when it raises, runs it on each item alone to find the items that raise
by themselves, records them (document, extract, stage, reason) and runs the stage again without
them. The items that do not fail get exactly the result they would have had without the bad
ones (same order, same neighbours), so their rows, and the dataset version, do not change. An
exception no single item reproduces is not a document's fault: it propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from twin_assets.domain.features import CleanedDocument, DocumentFailure
from twin_assets.domain.stores import DocumentStore

T = TypeVar("T")
R = TypeVar("R")


def _identity(item: object) -> tuple[str, str, str]:
    """(document id, link, extract id) of a document, an extract or a dataset row (or a tuple
    whose first element is one: an (extract, instruction) pair)."""
    if isinstance(item, tuple) and item:
        item = item[0]
    if isinstance(item, CleanedDocument):
        return item.id, item.link, ""
    doc = getattr(item, "source_document_id", None) or getattr(item, "document_id", None) or "?"
    return str(doc), "", str(getattr(item, "id", ""))


def failure_of(stage: str, exc: BaseException, item: object) -> DocumentFailure:
    doc, link, extract = _identity(item)
    return DocumentFailure.of(stage, exc, doc, link=link, extract_id=extract)


def run_isolated(
    stage: str,
    items: Sequence[T],
    run: Callable[[list[T]], R],
    failures: list[DocumentFailure],
) -> tuple[list[T], R]:
    """(the items `run` was finally given, its result). On an exception, the items that raise
    on their own are recorded in `failures` and left out; the others are run again together."""
    items = list(items)
    try:
        return items, run(items)
    except Exception as batch_error:
        bad: list[tuple[int, BaseException]] = []
        for i, item in enumerate(items):
            try:
                run([item])
            except Exception as exc:
                bad.append((i, exc))
        if not bad:
            raise  # no single item reproduces it: the stage itself is broken
        for i, exc in bad:
            failures.append(failure_of(stage, exc, items[i]))
        skipped = {i for i, _ in bad}
        kept = [item for i, item in enumerate(items) if i not in skipped]
        try:
            return kept, run(kept)
        except Exception as exc:
            if not kept:  # every item failed and the stage cannot even run empty
                raise EveryDocumentFailed(failures) from exc
            raise exc from batch_error


def load_cleaned(
    store: DocumentStore, author_id: str, failures: list[DocumentFailure]
) -> list[CleanedDocument]:
    """The author's cleaned documents; when one no longer validates (a malformed stored
    document), it is recorded as failed and the others are still loaded, one by one."""
    try:
        return store.get_cleaned(author_id)
    except Exception:
        pass
    docs: list[CleanedDocument] = []
    for doc_id in sorted(store.cleaned_hashes(author_id)):
        try:
            docs.extend(store.get_cleaned_by_id([doc_id]))
        except Exception as exc:
            failures.append(DocumentFailure.of("loading", exc, doc_id))
    return docs


def with_links(failures: list[DocumentFailure], docs: Sequence[CleanedDocument]) -> list[DocumentFailure]:
    """Failures with their document's link filled in (extracts and rows carry only its id)."""
    links = {d.id: d.link for d in docs}
    return [f if f.link else f.model_copy(update={"link": links.get(f.document_id, "")}) for f in failures]


def failed_document_ids(failures: Sequence[DocumentFailure]) -> set[str]:
    return {f.document_id for f in failures}


class EveryDocumentFailed(RuntimeError):
    """Every document the funnel worked on failed: the dataset would hold nothing useful."""

    def __init__(self, failures: list[DocumentFailure]):
        self.failures = failures
        first = failures[0]
        super().__init__(
            f"every document failed ({len(failed_document_ids(failures))}); nothing useful was produced. "
            f"First: {first.link or first.document_id} at {first.stage}: {first.reason}"
        )
