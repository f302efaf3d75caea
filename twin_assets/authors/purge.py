"""Deleting everything the platform holds about one author.

Removing an author from the registry only stops crawling them: their documents, vectors,
datasets and models stay, because a registry edit (a typo, a bad merge) must never destroy
data. Deleting an author's data (they asked to be forgotten, or were added by mistake) is a
separate, explicit act: `twin authors purge ID` or the `purge_author` job in the UI. It
refuses while the author is still registered, since the registry sensor would re-create the
partition and crawl them straight back.

Every store is keyed by author, so a purge is a handful of filtered deletes (the warehouse
itself knows which of its collections hold per-author rows: `AuthorDataStore`); it is safe to
re-run (a second purge deletes nothing and succeeds), and one store failing does not stop the
others: the report says what went where, and the failures are raised at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import BaseModel, Field

from twin_assets.domain.documents import Author
from twin_assets.domain.stores import ArtifactStore, AuthorDataStore

# Artifact-store prefixes per author (see training/data.py and training/registry.py).
ARTIFACT_PREFIXES: tuple[str, ...] = ("datasets/{author}", "models/{author}")


class AuthorStillRegistered(ValueError):
    """Raised instead of purging an author the registry still lists."""


class PurgeReport(BaseModel):
    author_id: str
    warehouse: dict[str, int] = Field(default_factory=dict, description="rows deleted per collection")
    vectors: int = 0
    artifacts: dict[str, int] = Field(default_factory=dict, description="files deleted per prefix")
    partition_deleted: bool = False
    errors: list[str] = Field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.warehouse.values()) + self.vectors + sum(self.artifacts.values())

    def summary(self) -> str:
        rows = ", ".join(f"{k} {v}" for k, v in sorted(self.warehouse.items()) if v) or "none"
        files = ", ".join(f"{k} {v}" for k, v in sorted(self.artifacts.items()) if v) or "none"
        return (
            f"purged {self.author_id}: warehouse rows: {rows}; vectors: {self.vectors}; "
            f"artifact files: {files}; partition deleted: {self.partition_deleted}"
            + (f"; ERRORS: {'; '.join(self.errors)}" if self.errors else "")
        )


class PurgeFailed(RuntimeError):
    def __init__(self, report: PurgeReport):
        super().__init__(report.summary())
        self.report = report


def ensure_not_registered(author_id: str, registry: Iterable[Author]) -> None:
    if any(a.id == author_id for a in registry):
        raise AuthorStillRegistered(
            f"author {author_id!r} is still in the registry; remove them from it first "
            "(otherwise the registry sensor would crawl them straight back)"
        )


def purge_author(
    author_id: str,
    *,
    store: AuthorDataStore,
    delete_vectors: Callable[[str], int] | None = None,
    artifacts: ArtifactStore | None = None,
    delete_partition: Callable[[str], bool] | None = None,
    keep_artifacts: bool = False,
) -> PurgeReport:
    """Delete the author's rows, vectors, artifacts and partition; raise `PurgeFailed` if any
    store could not be cleared (after trying all of them)."""
    if not author_id or "/" in author_id or author_id in {".", ".."}:
        raise ValueError(f"not an author id: {author_id!r}")
    report = PurgeReport(author_id=author_id)

    def attempt(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # every store is tried; failures are reported
            report.errors.append(f"{what}: {type(exc).__name__}: {exc}")

    def warehouse() -> None:
        report.warehouse.update(store.delete_author_data(author_id))

    attempt("warehouse", warehouse)
    if delete_vectors is not None:

        def vectors() -> None:
            report.vectors = delete_vectors(author_id)

        attempt("vector store", vectors)
    if artifacts is not None and not keep_artifacts:
        for template in ARTIFACT_PREFIXES:
            prefix = template.format(author=author_id)

            def files(prefix: str = prefix) -> None:
                report.artifacts[prefix] = artifacts.delete_prefix(prefix)

            attempt(f"artifacts {prefix}", files)
    if delete_partition is not None and not report.errors:
        # last, and only when the data is gone: a partition that outlives a failed purge keeps
        # the author visible in the UI so the purge can be retried from there
        def partition() -> None:
            report.partition_deleted = delete_partition(author_id)

        attempt("dagster partition", partition)
    if report.errors:
        raise PurgeFailed(report)
    return report
