"""The read-only, versioned copy of an author's index that the pipeline publishes and the
service loads.

Why a published snapshot rather than reading Qdrant: local-mode Qdrant allows one client per
folder and `embedded_chunks` holds it while it writes, so a service reading the same folder
would block the pipeline (or be blocked). Instead `embedded_chunks` publishes, after its checks
pass, an immutable version of the author's points (vectors + citation payloads + published
dates) to the artifact store and moves the alias `latest`; the service polls the alias and
swaps the new version in, while requests in flight keep the object they started with.

Layout, under `indexes/<author>/<version>/`:
- `vectors.npy`: float32 (count x dimension), unit rows, in `chunks.jsonl` order;
- `chunks.jsonl`: one chunk payload (`Chunk.payload()` + `published_at`) per line;
- `index_card.json`: the manifest (model, dimension, count, created_at, file hashes). It is
  written last: the version directory is built aside and renamed into place (the artifact
  store uploads `*card.json` files after every other file on S3), and the alias moves only after
  that, so a reader that follows the alias always finds a complete version.

The version is a hash of the content (model, dimension, chunk payloads with their text and
dates), so publishing unchanged data writes nothing and keeps the version, like the pipeline's
other data versions. Versions are immutable but not kept forever: `snapshot_retention` prunes
an author's older ones after each publish.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin_assets.domain.stores import ArtifactStore, VectorPoint
from twin_assets.serving.memory_index import AuthorIndex

SNAPSHOT_FORMAT = 1
ALIAS = "latest"
CARD = "index_card.json"
VECTORS = "vectors.npy"
CHUNKS = "chunks.jsonl"
_AUTHOR = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^[0-9a-f]{8,64}$")


class IndexNotFoundError(LookupError):
    """No published index for this author (or not this version)."""


class SnapshotError(ValueError):
    """The points or a stored version cannot make a valid index."""


def index_key(author_id: str, version: str | None = None) -> str:
    """`indexes/<author>` (the alias key) or `indexes/<author>/<version>`."""
    if not _AUTHOR.match(author_id):
        raise ValueError(f"author id {author_id!r} must be a lowercase slug (letters, digits, '-' or '_')")
    if version is None:
        return f"indexes/{author_id}"
    if not _VERSION.match(version):
        raise ValueError(f"index version {version!r} is not a version this store writes (hex hash)")
    return f"indexes/{author_id}/{version}"


def is_index_version(name: str) -> bool:
    """Whether `name` has the form of a version this module writes (a hex content hash)."""
    return bool(_VERSION.match(name))


@dataclass(frozen=True)
class IndexSnapshot:
    """One author's points, ready to publish: payloads sorted by chunk id, vectors aligned."""

    author_id: str  # "" only for an empty snapshot (no point says whose it is)
    embedding_model: str
    dimension: int
    payloads: tuple[dict[str, Any], ...]
    vectors: np.ndarray  # float32, (count, dimension)
    version: str
    created_at: datetime

    @property
    def count(self) -> int:
        return len(self.payloads)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # the warehouse stores UTC; a naive value is taken as UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def snapshot_version(embedding_model: str, payloads: Iterable[dict[str, Any]], dimension: int) -> str:
    """Content hash of an index: what decides whether publishing writes anything.

    The vectors are not hashed, their provenance is: a vector is a function of the chunk's
    content (in its payload) and the model. Their bits are not stable (Qdrant hands back a
    freshly upserted vector as given and a reloaded one normalised, one ulp apart), and a
    version that changed with them would republish unchanged data."""
    h = hashlib.sha256()
    h.update(_canonical({"format": SNAPSHOT_FORMAT, "model": embedding_model, "dimension": dimension}))
    for payload in payloads:
        h.update(_canonical(payload))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def build_snapshot(
    points: Iterable[VectorPoint], published_at: Mapping[str, datetime | None], embedding_model: str
) -> IndexSnapshot:
    """Points of ONE author (from `VectorIndex.scroll(author, with_vectors=True)`) -> a snapshot.

    `published_at` maps document ids to their publication dates (missing: unknown)."""
    rows: list[tuple[str, dict[str, Any], list[float]]] = []
    authors: set[str] = set()
    for point in points:
        if point.vector is None:
            raise SnapshotError(f"point {point.id} has no vector: scroll with with_vectors=True")
        payload = dict(point.payload)
        chunk_id = str(payload.get("chunk_id") or point.id)
        payload["chunk_id"] = chunk_id
        for key in ("author_id", "document_id", "category", "platform", "link", "content"):
            if payload.get(key) in (None, ""):
                raise SnapshotError(f"point {point.id} has no {key!r} in its payload")
        authors.add(str(payload["author_id"]))
        payload["published_at"] = _iso(published_at.get(str(payload["document_id"])))
        rows.append((chunk_id, payload, list(point.vector)))
    if len(authors) > 1:
        raise SnapshotError(f"points of several authors ({', '.join(sorted(authors))}): an index holds one")
    rows.sort(key=lambda r: r[0])
    dims = {len(v) for _, _, v in rows}
    if len(dims) > 1:
        raise SnapshotError(f"vectors of different dimensions {sorted(dims)}")
    dimension = dims.pop() if dims else 0
    vectors = np.asarray([v for _, _, v in rows], dtype=np.float32).reshape(len(rows), dimension)
    if not np.isfinite(vectors).all():
        raise SnapshotError("a vector holds NaN or infinity")
    payloads = tuple(p for _, p, _ in rows)
    vectors.flags.writeable = False
    return IndexSnapshot(
        author_id=authors.pop() if authors else "",
        embedding_model=embedding_model,
        dimension=dimension,
        payloads=payloads,
        vectors=vectors,
        version=snapshot_version(embedding_model, payloads, dimension),
        created_at=datetime.now(UTC),
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish_snapshot(artifacts: ArtifactStore, author_id: str, snapshot: IndexSnapshot) -> str:
    """Store the snapshot as `indexes/<author>/<version>/` and point `latest` at it; returns the
    version. An identical version already stored is not written again (the alias is only moved
    if it points elsewhere)."""
    if snapshot.author_id not in ("", author_id):
        raise SnapshotError(f"snapshot of {snapshot.author_id!r} published as {author_id!r}")
    key = index_key(author_id, snapshot.version)
    if not artifacts.exists(f"{key}/{CARD}"):
        with tempfile.TemporaryDirectory(prefix="index-") as tmp:
            staging = Path(tmp) / snapshot.version
            staging.mkdir()
            np.save(staging / VECTORS, np.ascontiguousarray(snapshot.vectors, dtype=np.float32))
            with (staging / CHUNKS).open("w", encoding="utf-8") as f:
                for payload in snapshot.payloads:
                    f.write(json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str))
                    f.write("\n")
            card = {
                "format": SNAPSHOT_FORMAT,
                "author_id": author_id,
                "version": snapshot.version,
                "embedding_model": snapshot.embedding_model,
                "dimension": snapshot.dimension,
                "count": snapshot.count,
                "created_at": snapshot.created_at.isoformat(),
                "files": {name: _sha256_file(staging / name) for name in (VECTORS, CHUNKS)},
            }
            (staging / CARD).write_text(json.dumps(card, indent=2, sort_keys=True))
            artifacts.put_dir(key, staging)
    if artifacts.read_alias(index_key(author_id), ALIAS) != snapshot.version:
        artifacts.write_alias(index_key(author_id), ALIAS, snapshot.version)
    return snapshot.version


def latest_index_version(artifacts: ArtifactStore, author_id: str) -> str | None:
    """The version `latest` points at (None: nothing published for this author)."""
    return artifacts.read_alias(index_key(author_id), ALIAS)


def index_uri(artifacts: ArtifactStore, author_id: str, version: str) -> str:
    return artifacts.uri(index_key(author_id, version))


def load_index(artifacts: ArtifactStore, author_id: str, version: str | None = None) -> AuthorIndex:
    """The published index of an author (the `latest` version unless one is named).

    Raises `IndexNotFoundError` when nothing (or not that version) is published and
    `SnapshotError` when the stored files are inconsistent (hash or shape mismatch)."""
    if version is None:
        version = latest_index_version(artifacts, author_id)
        if version is None:
            raise IndexNotFoundError(
                f"no retrieval index is published for author {author_id!r}: materialize "
                "embedded_chunks for this author"
            )
    key = index_key(author_id, version)
    path = artifacts.get_dir(key)
    if not (path / CARD).exists():
        raise IndexNotFoundError(f"index version {version!r} of author {author_id!r} is not stored ({key})")
    card = json.loads((path / CARD).read_text())
    if card.get("format") != SNAPSHOT_FORMAT or card.get("author_id") != author_id:
        raise SnapshotError(f"{key}: not an index of {author_id!r} in format {SNAPSHOT_FORMAT}")
    for name, digest in dict(card.get("files", {})).items():
        if not (path / name).exists() or _sha256_file(path / name) != digest:
            raise SnapshotError(f"{key}/{name} is missing or does not match its hash in {CARD}")
    vectors = np.load(path / VECTORS, allow_pickle=False)
    with (path / CHUNKS).open(encoding="utf-8") as f:
        payloads = [json.loads(line) for line in f if line.strip()]
    count, dimension = int(card["count"]), int(card["dimension"])
    if len(payloads) != count or vectors.shape != (count, dimension):
        raise SnapshotError(
            f"{key}: card says {count} x {dimension}, files hold {len(payloads)} chunks and {vectors.shape}"
        )
    return AuthorIndex(
        author_id=author_id,
        version=version,
        embedding_model=str(card["embedding_model"]),
        payloads=payloads,
        vectors=vectors,
        created_at=datetime.fromisoformat(card["created_at"]),
    )


def snapshot_index(snapshot: IndexSnapshot, author_id: str | None = None) -> AuthorIndex:
    """An in-memory index straight from a snapshot (no artifact store): tests, benchmarks."""
    return AuthorIndex(
        author_id=author_id or snapshot.author_id,
        version=snapshot.version,
        embedding_model=snapshot.embedding_model,
        payloads=snapshot.payloads,
        vectors=snapshot.vectors,
        created_at=snapshot.created_at,
    )


def refresh_index(
    artifacts: ArtifactStore, author_id: str, current: AuthorIndex | None
) -> AuthorIndex | None:
    """The newly published index when `latest` moved away from `current`'s version, else None.

    What a poller calls: a cheap alias read when nothing changed; the caller swaps the returned
    object in (one reference assignment), and requests holding `current` finish on it. Older
    versions are pruned after each publish, which is safe here: only the version `latest` names
    is loaded, that version and the one it named before are never pruned, and a loaded index
    holds no file open (see `snapshot_retention`)."""
    version = latest_index_version(artifacts, author_id)
    if version is None or (current is not None and current.version == version):
        return None
    return load_index(artifacts, author_id, version)
