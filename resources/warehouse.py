"""The document warehouse: MongoDB through pymongo, an embedded wire-protocol server by default.

`WarehouseResource` is the Dagster face (configuration + lifecycle); `DocumentStore` holds the
queries, so that they can be exercised directly in tests against a real wire-protocol server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import dagster as dg
import pymongo
from pydantic import Field, PrivateAttr
from pymongo import UpdateOne
from pymongo.database import Database

from resources.embedded_mongo import EmbeddedMongo
from twin_assets.domain.features import CleanedDocument
from twin_assets.domain.documents import (
    Author,
    Category,
    CrawlFailure,
    RawDocument,
    WriteStats,
    utcnow,
)

AUTHORS = "authors"
FAILURES = "crawl_failures"
CLEANED = "cleaned_documents"


class DocumentStore:
    """Idempotent reads and writes of authors, raw documents and crawl failures."""

    def __init__(self, db: Database):
        self.db = db

    # -- schema ------------------------------------------------------------------------------
    def ensure_indexes(self) -> None:
        for category in Category:
            self.db[category.value].create_index(
                [("author_id", 1), ("link", 1)], unique=True, name="author_link"
            )
        self.db[FAILURES].create_index(
            [("author_id", 1), ("link", 1)], unique=True, name="author_link"
        )
        self.db[CLEANED].create_index(
            [("author_id", 1), ("link", 1)], unique=True, name="author_link"
        )

    def collection(self, name: str):
        return self.db[name]

    # -- authors -----------------------------------------------------------------------------
    def upsert_author(self, author: Author) -> None:
        data = author.model_dump(mode="python")
        registered_at = data.pop("registered_at")
        self.db[AUTHORS].update_one(
            {"_id": author.id},
            {"$set": data, "$setOnInsert": {"registered_at": registered_at}},
            upsert=True,
        )

    def get_author(self, author_id: str) -> Author | None:
        data = self.db[AUTHORS].find_one({"_id": author_id})
        if data is None:
            return None
        data.pop("_id", None)
        return Author.model_validate(data)

    def list_authors(self) -> list[Author]:
        out = []
        for data in self.db[AUTHORS].find({}).sort("id", 1):
            data.pop("_id", None)
            out.append(Author.model_validate(data))
        return out

    # -- documents ---------------------------------------------------------------------------
    def upsert_documents(self, documents: Sequence[RawDocument]) -> WriteStats:
        """Insert new documents, rewrite changed ones, leave unchanged ones (same hash) alone."""
        stats = WriteStats()
        by_category: dict[Category, list[RawDocument]] = {}
        for doc in documents:
            by_category.setdefault(doc.category, []).append(doc)
        for category, docs in by_category.items():
            # the last occurrence of a link wins, so one batch never writes a link twice
            unique = {(d.author_id, d.link): d for d in docs}
            _upsert_changed(
                self.db[category.value],
                list(unique.values()),
                fields=("content_hash",),
                stats=stats,
                stamp=True,
                refresh=("source_link",),
            )
        return stats

    def delete_documents(self, author_id: str, ids: Iterable[str]) -> int:
        """Delete raw documents by id (whatever their category); returns how many went."""
        ids = list(ids)
        if not ids:
            return 0
        return sum(
            self.db[category.value].delete_many(
                {"author_id": author_id, "_id": {"$in": ids}}
            ).deleted_count
            for category in Category
        )

    def document_sources(self, author_id: str) -> dict[str, str | None]:
        """id -> registered link that produced the document (None: stored before it was kept)."""
        out: dict[str, str | None] = {}
        for category in Category:
            for row in self.db[category.value].find({"author_id": author_id}, {"source_link": 1}):
                out[row["_id"]] = row.get("source_link")
        return out

    def get_documents(
        self, author_id: str, categories: Iterable[Category] | None = None
    ) -> list[RawDocument]:
        out: list[RawDocument] = []
        for category in categories or list(Category):
            for data in self.db[Category(category).value].find({"author_id": author_id}).sort(
                "link", 1
            ):
                data.pop("stored_at", None)
                out.append(RawDocument.from_mongo(data))
        return out

    def document_hashes(self, author_id: str) -> dict[str, str]:
        """id -> content hash of every stored document of the author (cheap: no content)."""
        out: dict[str, str] = {}
        for category in Category:
            for row in self.db[category.value].find(
                {"author_id": author_id}, {"content_hash": 1}
            ):
                out[row["_id"]] = row["content_hash"]
        return out

    def duplicate_links(self, author_id: str) -> list[dict]:
        dups = []
        for category in Category:
            counts: dict[str, int] = {}
            for row in self.db[category.value].find({"author_id": author_id}, {"link": 1}):
                counts[row["link"]] = counts.get(row["link"], 0) + 1
            dups += [
                {"category": category.value, "link": link, "count": n}
                for link, n in counts.items()
                if n > 1
            ]
        return dups

    def empty_documents(self, author_id: str) -> list[dict]:
        empty = []
        for category in Category:
            for row in self.db[category.value].find(
                {"author_id": author_id}, {"link": 1, "content": 1}
            ):
                if not (row.get("content") or "").strip():
                    empty.append({"category": category.value, "link": row["link"]})
        return empty

    # -- cleaned documents -------------------------------------------------------------------
    def upsert_cleaned(self, documents: Sequence[CleanedDocument]) -> WriteStats:
        """Same contract as `upsert_documents`: unchanged cleaned content is not rewritten."""
        stats = WriteStats()
        unique = {d.id: d for d in documents}
        _upsert_changed(
            self.db[CLEANED],
            list(unique.values()),
            fields=("content_hash", "raw_content_hash"),
            stats=stats,
        )
        return stats

    def get_cleaned(
        self, author_id: str, categories: Iterable[Category] | None = None
    ) -> list[CleanedDocument]:
        query: dict = {"author_id": author_id}
        if categories is not None:
            query["category"] = {"$in": [Category(c).value for c in categories]}
        return [
            CleanedDocument.from_mongo(row)
            for row in self.db[CLEANED].find(query).sort("link", 1)
        ]

    def cleaned_hashes(self, author_id: str) -> dict[str, tuple[str, str]]:
        """id -> (cleaned content hash, raw content hash it was cleaned from)."""
        return {
            row["_id"]: (row["content_hash"], row["raw_content_hash"])
            for row in self.db[CLEANED].find(
                {"author_id": author_id}, {"content_hash": 1, "raw_content_hash": 1}
            )
        }

    def delete_cleaned(self, author_id: str, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        return self.db[CLEANED].delete_many(
            {"author_id": author_id, "_id": {"$in": ids}}
        ).deleted_count

    # -- failures ----------------------------------------------------------------------------
    def record_failures(self, author_id: str, failures: Sequence[CrawlFailure]) -> None:
        ops = []
        for failure in failures:
            data = failure.to_mongo()
            _id = data.pop("_id")
            ops.append(UpdateOne({"_id": _id}, {"$set": data}, upsert=True))
        if ops:
            self.db[FAILURES].bulk_write(ops, ordered=False)

    def clear_failures(self, author_id: str, links: Iterable[str]) -> int:
        links = list(links)
        if not links:
            return 0
        return self.db[FAILURES].delete_many(
            {"author_id": author_id, "link": {"$in": links}}
        ).deleted_count

    def list_failures(self, author_id: str) -> list[CrawlFailure]:
        out = []
        for data in self.db[FAILURES].find({"author_id": author_id}).sort("link", 1):
            data.pop("_id", None)
            out.append(CrawlFailure.model_validate(data))
        return out


def _upsert_changed(
    col, docs: Sequence[RawDocument | CleanedDocument], *, fields: tuple[str, ...],
    stats: WriteStats, stamp: bool = False, refresh: tuple[str, ...] = (),
) -> None:
    """One read of the stored `fields` (hashes), then one bulk write of only what differs: an
    unchanged document costs a key lookup and is never rewritten. `refresh` fields are
    bookkeeping (which link produced a document): set when they differ on an unchanged
    document, without counting it as updated (its content, and everything downstream, is the same)."""
    projection = {f: 1 for f in (*fields, *refresh)}
    rows = {row["_id"]: row for row in col.find({"_id": {"$in": [d.id for d in docs]}}, projection)}
    existing = {_id: tuple(row.get(f) for f in fields) for _id, row in rows.items()}
    ops = []
    for doc in docs:
        old = existing.get(doc.id)
        if old == tuple(getattr(doc, f) for f in fields):
            stats.unchanged += 1
            stale = {f: getattr(doc, f) for f in refresh if rows[doc.id].get(f) != getattr(doc, f)}
            if stale:
                ops.append(UpdateOne({"_id": doc.id}, {"$set": stale}))
            continue
        data = doc.to_mongo()
        data.pop("_id")
        if stamp:
            data["stored_at"] = utcnow()
        ops.append(UpdateOne({"_id": doc.id}, {"$set": data}, upsert=True))
        if old is None:
            stats.new += 1
            stats.new_ids.append(doc.id)
        else:
            stats.updated += 1
            stats.updated_ids.append(doc.id)
    if ops:
        col.bulk_write(ops, ordered=False)


class WarehouseResource(dg.ConfigurableResource):
    """MongoDB warehouse. With no `uri`, starts (or reuses) the embedded nx-27017 server."""

    uri: str = Field(
        default="",
        description="MongoDB connection string (TWIN_MONGO_URI). Empty: embedded server.",
    )
    database: str = Field(default="twin", description="Database name (TWIN_MONGO_DATABASE).")
    embedded_data_dir: str = Field(
        default=".data/mongo", description="Where the embedded server keeps its data."
    )
    embedded_port: int = Field(default=27027, description="Port of the embedded server.")
    server_selection_timeout_ms: int = 10_000

    _client: pymongo.MongoClient | None = PrivateAttr(default=None)

    def embedded(self) -> EmbeddedMongo:
        return EmbeddedMongo(data_dir=Path(self.embedded_data_dir).resolve(), port=self.embedded_port)

    def resolved_uri(self) -> str:
        if self.uri:
            return self.uri
        server = self.embedded()
        server.start()
        return server.uri

    def get_client(self) -> pymongo.MongoClient:
        if self._client is None:
            self._client = pymongo.MongoClient(
                self.resolved_uri(),
                tz_aware=True,
                serverSelectionTimeoutMS=self.server_selection_timeout_ms,
            )
        return self._client

    def get_store(self) -> DocumentStore:
        store = DocumentStore(self.get_client()[self.database])
        store.ensure_indexes()
        return store

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
