"""The document warehouse: MongoDB through pymongo, an embedded wire-protocol server by default.

`WarehouseResource` is the Dagster face (configuration + lifecycle); `MongoStore` holds the
queries, so that they can be exercised directly in tests against a real wire-protocol server.
`MongoStore` implements the store protocols of `twin_assets.domain.stores` (documents, chunks,
manifests, author purge, the inference service's API keys and prompt logs): the logic packages are written against those and never see pymongo.
The collection names below are defined here and nowhere else.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pymongo
from pydantic import Field, PrivateAttr
from pymongo import DeleteMany, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, OperationFailure
from pymongo.uri_parser import parse_uri

from resources.embedded_mongo import EmbeddedMongo, EmbeddedMongoError
from twin_assets.domain.documents import (
    Author,
    Category,
    CrawlFailure,
    RawDocument,
    WriteStats,
    utcnow,
)
from twin_assets.domain.features import Chunk, CleanedDocument
from twin_assets.domain.serving import ApiKeyRecord, PromptLog
from twin_assets.domain.stores import ChunkManifest, EmbeddingManifest

AUTHORS = "authors"
FAILURES = "crawl_failures"
CLEANED = "cleaned_documents"
CHUNKS = "chunks"
CHUNK_MANIFESTS = "chunk_manifests"
EMBEDDING_MANIFESTS = "embedding_manifests"
API_KEYS = "api_keys"
PROMPT_LOGS = "prompt_logs"
AUTHOR_COLLECTIONS: tuple[str, ...] = (
    *(c.value for c in Category),
    FAILURES,
    CLEANED,
    CHUNKS,
    CHUNK_MANIFESTS,
    EMBEDDING_MANIFESTS,
    PROMPT_LOGS,
)
"""Every collection holding per-author rows under an `author_id` field (what a purge clears);
`AUTHORS` itself is keyed by the author id."""

_ID_BATCH = 1000


def _batched(items: Sequence[str], size: int = _ID_BATCH) -> Iterable[list[str]]:
    """`$in` lists of bounded size (a huge one is one huge command)."""
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]


class WarehouseAuthUnsupported(EmbeddedMongoError):
    """TWIN_MONGO_URI has credentials but the server has no authentication (the embedded
    nx-27017 warehouse): pymongo's handshake otherwise dies with `KeyError: 'payload'`."""


class MongoStore:
    """Idempotent reads and writes of authors, raw and cleaned documents, crawl failures, chunks
    the feature pipeline's manifests, and the inference service's API keys and prompt logs
    (implements `DocumentStore`, `ChunkStore`, `ManifestStore`, `AuthorDataStore`, `ApiKeyStore`
    and `PromptLogStore` of `twin_assets.domain.stores`)."""

    def __init__(self, db: Database):
        self._db = db

    # -- schema ------------------------------------------------------------------------------
    def ensure_indexes(self) -> None:
        for category in Category:
            self._db[category.value].create_index(
                [("author_id", 1), ("link", 1)], unique=True, name="author_link"
            )
        self._db[FAILURES].create_index([("author_id", 1), ("link", 1)], unique=True, name="author_link")
        self._db[CLEANED].create_index([("author_id", 1), ("link", 1)], unique=True, name="author_link")
        # per-document chunk lookups (replace_chunks, delete_chunks) stay cheap as it grows
        self._db[CHUNKS].create_index([("document_id", 1)], name="document_id")
        self._db[CHUNKS].create_index([("author_id", 1)], name="author_id")
        # a request's key is found by the hash of what it presents; two keys never share one
        self._db[API_KEYS].create_index([("hash", 1)], unique=True, name="hash")
        # the daily summary reads one day (of one author); retention deletes by age
        self._db[PROMPT_LOGS].create_index([("at", 1)], name="at")
        self._db[PROMPT_LOGS].create_index([("author_id", 1), ("at", 1)], name="author_at")

    # -- authors -----------------------------------------------------------------------------
    def upsert_author(self, author: Author) -> None:
        data = author.model_dump(mode="python")
        registered_at = data.pop("registered_at")
        self._db[AUTHORS].update_one(
            {"_id": author.id},
            {"$set": data, "$setOnInsert": {"registered_at": registered_at}},
            upsert=True,
        )

    def get_author(self, author_id: str) -> Author | None:
        data = self._db[AUTHORS].find_one({"_id": author_id})
        if data is None:
            return None
        data.pop("_id", None)
        return Author.model_validate(data)

    def list_authors(self) -> list[Author]:
        out = []
        for data in self._db[AUTHORS].find({}).sort("id", 1):
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
                self._db[category.value],
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
            self._db[category.value].delete_many({"author_id": author_id, "_id": {"$in": ids}}).deleted_count
            for category in Category
        )

    def document_sources(self, author_id: str) -> dict[str, str | None]:
        """id -> registered link that produced the document (None: stored before it was kept)."""
        out: dict[str, str | None] = {}
        for category in Category:
            for row in self._db[category.value].find({"author_id": author_id}, {"source_link": 1}):
                out[row["_id"]] = row.get("source_link")
        return out

    def get_documents(
        self, author_id: str, categories: Iterable[Category] | None = None
    ) -> list[RawDocument]:
        out: list[RawDocument] = []
        for category in categories or list(Category):
            for data in self._db[Category(category).value].find({"author_id": author_id}).sort("link", 1):
                data.pop("stored_at", None)
                out.append(RawDocument.from_mongo(data))
        return out

    def get_documents_by_id(self, ids: Sequence[str]) -> list[RawDocument]:
        """Raw documents by id, whatever their category."""
        out: list[RawDocument] = []
        for batch in _batched(ids):
            for category in Category:
                for data in self._db[category.value].find({"_id": {"$in": batch}}):
                    data.pop("stored_at", None)
                    out.append(RawDocument.from_mongo(data))
        return out

    def document_hashes(self, author_id: str) -> dict[str, str]:
        """id -> content hash of every stored document of the author (cheap: no content)."""
        out: dict[str, str] = {}
        for category in Category:
            for row in self._db[category.value].find({"author_id": author_id}, {"content_hash": 1}):
                out[row["_id"]] = row["content_hash"]
        return out

    def duplicate_links(self, author_id: str) -> list[dict]:
        dups = []
        for category in Category:
            counts: dict[str, int] = {}
            for row in self._db[category.value].find({"author_id": author_id}, {"link": 1}):
                counts[row["link"]] = counts.get(row["link"], 0) + 1
            dups += [
                {"category": category.value, "link": link, "count": n} for link, n in counts.items() if n > 1
            ]
        return dups

    def empty_documents(self, author_id: str) -> list[dict]:
        empty = []
        for category in Category:
            for row in self._db[category.value].find({"author_id": author_id}, {"link": 1, "content": 1}):
                if not (row.get("content") or "").strip():
                    empty.append({"category": category.value, "link": row["link"]})
        return empty

    # -- cleaned documents -------------------------------------------------------------------
    def upsert_cleaned(self, documents: Sequence[CleanedDocument]) -> WriteStats:
        """Same contract as `upsert_documents`: unchanged cleaned content is not rewritten."""
        stats = WriteStats()
        unique = {d.id: d for d in documents}
        _upsert_changed(
            self._db[CLEANED],
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
        return [CleanedDocument.from_mongo(row) for row in self._db[CLEANED].find(query).sort("link", 1)]

    def get_cleaned_by_id(self, ids: Sequence[str]) -> list[CleanedDocument]:
        out: list[CleanedDocument] = []
        for batch in _batched(ids):
            out += [CleanedDocument.from_mongo(r) for r in self._db[CLEANED].find({"_id": {"$in": batch}})]
        return out

    def cleaned_provenance(self, author_id: str) -> dict[str, tuple[str | None, str | None]]:
        """id -> (raw content hash, cleaner version) each cleaned document was made from."""
        return {
            row["_id"]: (row.get("raw_content_hash"), row.get("cleaner_version"))
            for row in self._db[CLEANED].find(
                {"author_id": author_id}, {"raw_content_hash": 1, "cleaner_version": 1}
            )
        }

    def set_cleaner_version(self, ids: Sequence[str], version: str) -> None:
        ids = list(ids)
        if ids:
            self._db[CLEANED].update_many({"_id": {"$in": ids}}, {"$set": {"cleaner_version": version}})

    def cleaned_hashes(self, author_id: str) -> dict[str, tuple[str, str]]:
        """id -> (cleaned content hash, raw content hash it was cleaned from)."""
        return {
            row["_id"]: (row["content_hash"], row["raw_content_hash"])
            for row in self._db[CLEANED].find(
                {"author_id": author_id}, {"content_hash": 1, "raw_content_hash": 1}
            )
        }

    def delete_cleaned(self, author_id: str, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        return self._db[CLEANED].delete_many({"author_id": author_id, "_id": {"$in": ids}}).deleted_count

    # -- failures ----------------------------------------------------------------------------
    def record_failures(self, author_id: str, failures: Sequence[CrawlFailure]) -> None:
        ops = []
        for failure in failures:
            data = failure.to_mongo()
            _id = data.pop("_id")
            ops.append(UpdateOne({"_id": _id}, {"$set": data}, upsert=True))
        if ops:
            self._db[FAILURES].bulk_write(ops, ordered=False)

    def clear_failures(self, author_id: str, links: Iterable[str]) -> int:
        links = list(links)
        if not links:
            return 0
        return self._db[FAILURES].delete_many({"author_id": author_id, "link": {"$in": links}}).deleted_count

    def list_failures(self, author_id: str) -> list[CrawlFailure]:
        out = []
        for data in self._db[FAILURES].find({"author_id": author_id}).sort("link", 1):
            data.pop("_id", None)
            out.append(CrawlFailure.model_validate(data))
        return out

    # -- chunks ------------------------------------------------------------------------------
    def replace_chunks(self, document_id: str, chunks: Sequence[Chunk]) -> None:
        """Upsert the document's chunks and delete its others, in one ordered bulk write."""
        ids = [c.id for c in chunks]
        col = self._db[CHUNKS]
        # Stale chunks by exact id: a `$nin` delete makes the embedded server scan the whole
        # collection for every document (measured: 26 ms vs 1 ms per document at 16k chunks).
        stale = {r["_id"] for r in col.find({"document_id": document_id}, {"_id": 1})} - set(ids)
        ops: list[Any] = [DeleteMany({"_id": {"$in": sorted(stale)}})] if stale else []
        for c in chunks:
            data = c.to_mongo()
            data.pop("_id")
            ops.append(UpdateOne({"_id": c.id}, {"$set": data}, upsert=True))
        if ops:
            col.bulk_write(ops, ordered=True)

    def delete_chunks(self, author_id: str, document_ids: Sequence[str]) -> int:
        return sum(
            self._db[CHUNKS]
            .delete_many({"author_id": author_id, "document_id": {"$in": batch}})
            .deleted_count
            for batch in _batched(document_ids)
        )

    def find_chunks(self, author_id: str, ids: Sequence[str] | None = None) -> list[Chunk]:
        if ids is None:
            return [Chunk.from_mongo(r) for r in self._db[CHUNKS].find({"author_id": author_id})]
        out: list[Chunk] = []
        for batch in _batched(ids):
            out += [Chunk.from_mongo(r) for r in self._db[CHUNKS].find({"_id": {"$in": batch}})]
        return out

    def chunk_ids(self, author_id: str) -> set[str]:
        return {r["_id"] for r in self._db[CHUNKS].find({"author_id": author_id}, {"_id": 1})}

    def chunk_texts(self, author_id: str) -> list[tuple[str, str]]:
        return [
            (r["_id"], r["content"]) for r in self._db[CHUNKS].find({"author_id": author_id}, {"content": 1})
        ]

    def chunk_sizes(self, author_id: str) -> list[tuple[str, int]]:
        return [
            (r["category"], int(r["token_count"]))
            for r in self._db[CHUNKS].find({"author_id": author_id}, {"category": 1, "token_count": 1})
        ]

    # -- manifests ---------------------------------------------------------------------------
    def chunk_manifests(self, author_id: str) -> dict[str, ChunkManifest]:
        rows = self._db[CHUNK_MANIFESTS].find({"author_id": author_id})
        return {r["_id"]: ChunkManifest.model_validate({**r, "document_id": r["_id"]}) for r in rows}

    def put_chunk_manifest(self, manifest: ChunkManifest) -> None:
        data = manifest.model_dump(mode="python", exclude={"document_id"})
        self._db[CHUNK_MANIFESTS].update_one({"_id": manifest.document_id}, {"$set": data}, upsert=True)

    def delete_chunk_manifests(self, document_ids: Sequence[str]) -> int:
        return sum(
            self._db[CHUNK_MANIFESTS].delete_many({"_id": {"$in": batch}}).deleted_count
            for batch in _batched(document_ids)
        )

    def embedding_manifests(self, author_id: str) -> dict[str, EmbeddingManifest]:
        rows = self._db[EMBEDDING_MANIFESTS].find({"author_id": author_id})
        return {r["_id"]: EmbeddingManifest.model_validate({**r, "document_id": r["_id"]}) for r in rows}

    def put_embedding_manifests(self, manifests: Sequence[EmbeddingManifest]) -> None:
        ops = [
            UpdateOne(
                {"_id": m.document_id},
                {"$set": m.model_dump(mode="python", exclude={"document_id"})},
                upsert=True,
            )
            for m in manifests
        ]
        if ops:
            self._db[EMBEDDING_MANIFESTS].bulk_write(ops, ordered=False)

    def delete_embedding_manifests(self, document_ids: Sequence[str]) -> int:
        return sum(
            self._db[EMBEDDING_MANIFESTS].delete_many({"_id": {"$in": batch}}).deleted_count
            for batch in _batched(document_ids)
        )

    # -- API keys of the inference service ---------------------------------------------------
    def insert_key(self, record: ApiKeyRecord) -> None:
        data = record.model_dump(mode="python")
        data["_id"] = data.pop("id")
        self._db[API_KEYS].insert_one(data)

    def find_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = self._db[API_KEYS].find_one({"hash": key_hash})
        return None if row is None else _key_record(row)

    def list_keys(self) -> list[ApiKeyRecord]:
        return [_key_record(r) for r in self._db[API_KEYS].find({}).sort("created_at", 1)]

    def revoke_key(self, key_id: str) -> bool:
        # $currentDate, not $set: the embedded server stores a $set datetime as a naive string
        result = self._db[API_KEYS].update_one(
            {"_id": key_id, "revoked_at": None}, {"$currentDate": {"revoked_at": True}}
        )
        return result.modified_count == 1

    # -- prompt logs of the inference service ------------------------------------------------
    def insert_prompt_logs(self, logs: Sequence[PromptLog]) -> int:
        """Plain inserts (an upsert's `$set` would store `at` as a string on the embedded
        server, out of reach of the time queries); an id already stored is skipped."""
        rows = []
        for log in logs:
            data = log.model_dump(mode="python")
            data["_id"] = data.pop("id")
            rows.append(data)
        if not rows:
            return 0
        try:
            return len(self._db[PROMPT_LOGS].insert_many(rows, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
            return int(exc.details.get("nInserted", 0))

    def find_prompt_logs(
        self, start: datetime, end: datetime, author_id: str | None = None
    ) -> list[PromptLog]:
        query: dict[str, Any] = {"at": {"$gte": start, "$lt": end}}
        if author_id is not None:
            query["author_id"] = author_id
        return [
            PromptLog.model_validate({**r, "id": r["_id"]})
            for r in self._db[PROMPT_LOGS].find(query).sort("at", 1)
        ]

    def delete_prompt_logs_before(self, cutoff: datetime) -> int:
        return self._db[PROMPT_LOGS].delete_many({"at": {"$lt": cutoff}}).deleted_count

    # -- forgetting an author ----------------------------------------------------------------
    def delete_author_data(self, author_id: str) -> dict[str, int]:
        """Every row of the author in every per-author collection (prompt logs included), and
        the author itself. API keys scoped to the author lose that scope (a key scoped to them
        alone then allows nothing): a later author registered under the same id must not be
        reachable with a key issued for the one who was forgotten."""
        deleted = {
            name: self._db[name].delete_many({"author_id": author_id}).deleted_count
            for name in AUTHOR_COLLECTIONS
        }
        deleted[AUTHORS] = self._db[AUTHORS].delete_many({"_id": author_id}).deleted_count
        deleted[f"{API_KEYS} (scopes)"] = (
            self._db[API_KEYS]
            .update_many({"authors": author_id}, {"$pull": {"authors": author_id}})
            .modified_count
        )
        return deleted


def _key_record(row: dict) -> ApiKeyRecord:
    return ApiKeyRecord.model_validate({**row, "id": row["_id"]})


def _upsert_changed(
    col: Collection,
    docs: Sequence[RawDocument | CleanedDocument],
    *,
    fields: tuple[str, ...],
    stats: WriteStats,
    stamp: bool = False,
    refresh: tuple[str, ...] = (),
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


def _has_credentials(uri: str) -> bool:
    try:
        return bool(parse_uri(uri, validate=False).get("username"))
    except Exception:  # an unparsable URI fails on its own, with pymongo's error
        return False


def _hosts(uri: str) -> str:
    """The URI's hosts, never the whole URI (it holds the password)."""
    try:
        return ", ".join(f"{host}:{port}" for host, port in parse_uri(uri, validate=False)["nodelist"])
    except Exception:  # a message never fails for want of a host list
        return "TWIN_MONGO_URI"


def _auth_unsupported(exc: BaseException) -> bool:
    """Whether `exc` came out of pymongo's authentication handshake for a reason other than
    wrong credentials: a server without authentication answers `saslStart` without the SCRAM
    payload (KeyError) or refuses the command."""
    if isinstance(exc, OperationFailure) and exc.code == 18:  # AuthenticationFailed: bad credentials
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return any("pymongo" in Path(f.filename).parts and Path(f.filename).stem == "auth" for f in frames)


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

    def get_store(self) -> MongoStore:
        store = MongoStore(self.get_client()[self.database])
        try:
            store.ensure_indexes()  # the first command: the connection authenticates here
        except Exception as exc:
            if self.uri and _has_credentials(self.uri) and _auth_unsupported(exc):
                raise WarehouseAuthUnsupported(
                    f"TWIN_MONGO_URI carries credentials (user and password), but the MongoDB "
                    f"server at {_hosts(self.uri)} does not support authentication (the embedded "
                    "nx-27017 warehouse has none). Drop the credentials from TWIN_MONGO_URI, or "
                    "point it at a real MongoDB server."
                ) from None  # pymongo's error says nothing useful (KeyError: 'payload')
            raise
        return store

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
