"""Content fingerprints of model checkpoints: the base model's identity for retraining.

Three entry points, from the most to the least resolved input:
- `fingerprint_base_model(name_or_path)`: what `from_pretrained(name_or_path)` would load, be it a
  local directory, a snapshot in the HF cache or (hub reachable) a hub model not yet downloaded;
- `fingerprint_directory(path)`: a local checkpoint directory (or single weights file), with
  statistics (files, bytes, how many were re-read);
- `directory_digest(path)`: the same, digest only.

WHY content, not name: a base model replaced in place (same TWIN_BASE_MODEL path or hub id,
same config.json, new weights, tokenizer or chat template) must give the twin a new version,
or the old fine-tune silently stays in production on top of weights it was not trained for.

WHY a stat-keyed cache: hashing a 16 GB checkpoint takes minutes and the `base_model` asset
(and every training run) asks for the fingerprint. A file's sha256 is cached under
(path, size, mtime_ns, ctime_ns, inode, device) and re-read only when any of these changes;
ctime catches rewrites that preserve mtime (`cp -p`, `rsync -t`). As in git's "racy clean"
rule, a digest is not cached while the file's timestamps are younger than `RACY_WINDOW_S`: a
write landing in the same timestamp tick as the hash would otherwise be missed forever.

WHY Hugging Face etags: in the HF hub cache, snapshot files are symlinks to
`blobs/<etag>`, and the etag IS a content hash (sha256 for LFS files, the git blob sha1 for
small ones), so a cached hub model is fingerprinted without reading a byte of it; the same
hashes come from the hub's file metadata, so a model not yet downloaded gets the same
fingerprint it will have once it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from twin_assets.paths import data_dir

FINGERPRINT_SCHEME = "twin-checkpoint-fingerprint-v1"
HASH_BLOCK_BYTES = 4 * 1024 * 1024
RACY_WINDOW_S = 2.0
"""Digests of files whose mtime/ctime are younger than this are computed but not cached."""

_ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_DOC_SUFFIXES = {".md", ".rst", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".lock"}
_DOC_PREFIXES = ("readme", "license", "licence", "notice", "copying", "citation")


class CheckpointNotFoundError(FileNotFoundError):
    """The base model is neither a local checkpoint nor resolvable through the HF cache/hub."""


@dataclass(frozen=True)
class CheckpointFingerprint:
    digest: str  # sha256 hex over (relative path, file content hash) of every model file
    source: str  # "content-sha256" | "hf-cache-etags" | "hf-hub-metadata"
    files: int
    total_bytes: int
    rehashed_files: int  # files read this time (0 when everything came from the cache/etags)
    location: str  # local directory, or "<repo id>@<revision>" for hub metadata
    revision: str = ""  # HF commit hash when known


def is_model_file(rel_path: str) -> bool:
    """Files a `from_pretrained` may load: everything but docs, images and hidden files.

    A deny-list on purpose: an allow-list would miss some tokenizer's `spiece.model` or a
    custom-code `modeling_*.py`, and a missed file is a silently stale twin.
    """
    parts = rel_path.split("/")
    if any(p.startswith(".") for p in parts):
        return False
    name = parts[-1].lower()
    return Path(name).suffix not in _DOC_SUFFIXES and not name.startswith(_DOC_PREFIXES)


def file_sha256(path: Path, block_bytes: int = HASH_BLOCK_BYTES) -> str:
    """Streaming sha256: memory stays at one block however large the file."""
    digest = hashlib.sha256()
    buf = bytearray(block_bytes)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def hf_blob_etag(path: Path) -> str | None:
    """The etag of a file in an HF hub cache snapshot (symlink into `blobs/`), else None."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    if target.parent.name == "blobs" and _ETAG.fullmatch(target.name) and target.is_file():
        return target.name
    return None


def _stat_key(st: os.stat_result) -> dict:
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }


def _model_files(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(root.name, root)]
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):  # no followlinks: no loops via dir links
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if is_model_file(rel) and path.is_file():
                found.append((rel, path))
    return sorted(found)


def default_cache_dir() -> Path:
    return data_dir() / "cache" / "checkpoint-fingerprints"


def _cache_file(cache_dir: Path, root: Path) -> Path:
    return cache_dir / f"{hashlib.sha256(str(root).encode()).hexdigest()[:24]}.json"


def _load_cache(path: Path, root: Path) -> dict[str, dict]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or torn: the cache is only an optimisation, re-hash
    if payload.get("scheme") != FINGERPRINT_SCHEME or payload.get("root") != str(root):
        return {}
    files = payload.get("files")
    return files if isinstance(files, dict) else {}


def _save_cache(path: Path, root: Path, files: dict[str, dict]) -> None:
    """Atomic replace; concurrent writers may drop each other's entries, which costs a re-hash only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"scheme": FINGERPRINT_SCHEME, "root": str(root), "files": files}, f)
        os.replace(tmp, path)
    except OSError:
        pass  # read-only data dir: fingerprints stay correct, just not cached


def _hash_stable(path: Path) -> tuple[str, os.stat_result]:
    """Hash a file that is not being written: the stat before and after the read must agree."""
    for _ in range(3):
        before = path.stat()
        digest = file_sha256(path)
        after = path.stat()
        if _stat_key(before) == _stat_key(after):
            return digest, after
    raise RuntimeError(f"{path} kept changing while it was hashed: is a download or export still running?")


def _combine(entries: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(FINGERPRINT_SCHEME.encode() + b"\n")
    for rel, content_id in entries:
        h.update(f"{rel}\t{content_id}\n".encode())
    return h.hexdigest()


def fingerprint_directory(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    racy_window_s: float | None = None,
) -> CheckpointFingerprint:
    """Fingerprint of a local checkpoint directory (or single weights file), with statistics.

    Each model file contributes its relative path and content hash: its HF etag when it lives
    in the HF hub cache, else its sha256 (from the stat-keyed cache when the file is unchanged).
    """
    window = RACY_WINDOW_S if racy_window_s is None else racy_window_s
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise CheckpointNotFoundError(f"no checkpoint at {root}")
    files = _model_files(root)
    if not files:
        raise CheckpointNotFoundError(f"{root} holds no model files to fingerprint")
    cache_path = _cache_file(Path(cache_dir) if cache_dir else default_cache_dir(), root)
    cached = _load_cache(cache_path, root)
    fresh: dict[str, dict] = {}
    entries: list[tuple[str, str]] = []
    total = rehashed = etags = 0
    for rel, file in files:
        etag = hf_blob_etag(file)
        if etag is not None:
            entries.append((rel, f"hf-etag:{etag}"))
            total += file.stat().st_size
            etags += 1
            continue
        st = file.stat()
        key = _stat_key(st)
        hit = cached.get(rel)
        if hit is not None and {k: hit.get(k) for k in key} == key and isinstance(hit.get("sha256"), str):
            digest = hit["sha256"]
        else:
            digest, st = _hash_stable(file)
            key = _stat_key(st)
            rehashed += 1
        total += st.st_size
        entries.append((rel, f"sha256:{digest}"))
        newest_s = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
        if time.time() - newest_s >= window:
            fresh[rel] = {**key, "sha256": digest}
    if fresh != cached:
        _save_cache(cache_path, root, fresh)
    source = "hf-cache-etags" if etags == len(files) else "content-sha256"
    return CheckpointFingerprint(
        digest=_combine(entries),
        source=source,
        files=len(files),
        total_bytes=total,
        rehashed_files=rehashed,
        location=str(root),
        revision=_snapshot_revision(root),
    )


def directory_digest(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> str:
    """The content fingerprint (sha256 hex) of a local checkpoint; see `fingerprint_directory`."""
    return fingerprint_directory(path, cache_dir=cache_dir).digest


def _snapshot_revision(root: Path) -> str:
    """The commit hash when `root` is `.../models--org--name/snapshots/<commit>`."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return root.name
    return ""


def hf_cached_snapshot(
    repo_id: str, revision: str | None = None, *, hub_cache_dir: str | os.PathLike | None = None
) -> Path | None:
    """The local HF-cache snapshot of a hub model (no network), or None when not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                local_files_only=True,
                cache_dir=str(hub_cache_dir) if hub_cache_dir else None,
            )
        )
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError):
        return None


def fingerprint_from_hub_siblings(siblings, *, location: str, revision: str = "") -> CheckpointFingerprint:
    """Fingerprint from hub file metadata (`model_info(files_metadata=True).siblings`).

    Uses the same etags the HF cache names its blobs by (LFS sha256, else git blob id), so it
    equals the fingerprint of the downloaded snapshot.
    """
    entries: list[tuple[str, str]] = []
    total = 0
    for sib in siblings:
        rel = sib.rfilename
        if not is_model_file(rel):
            continue
        lfs = getattr(sib, "lfs", None)
        etag = (lfs.sha256 if lfs is not None else None) or sib.blob_id
        if not etag:
            raise CheckpointNotFoundError(f"{location}: hub metadata has no content hash for {rel}")
        entries.append((rel, f"hf-etag:{etag}"))
        total += sib.size or 0
    if not entries:
        raise CheckpointNotFoundError(f"{location} lists no model files")
    entries.sort()
    return CheckpointFingerprint(
        digest=_combine(entries),
        source="hf-hub-metadata",
        files=len(entries),
        total_bytes=total,
        rehashed_files=0,
        location=location,
        revision=revision,
    )


def fingerprint_base_model(
    resolved: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    hub_cache_dir: str | os.PathLike | None = None,
) -> CheckpointFingerprint:
    """Fingerprint of what `from_pretrained(resolved)` would load: a local dir, else a hub id.

    A hub id is looked up in the local HF cache first (etags, no reads); when it is not there
    and the hub is reachable (HF_HUB_OFFLINE unset), from the hub's file metadata, without
    downloading the weights.
    """
    local = Path(resolved).expanduser()
    if local.exists():
        return fingerprint_directory(local, cache_dir=cache_dir)
    snapshot = hf_cached_snapshot(resolved, hub_cache_dir=hub_cache_dir)
    if snapshot is not None:
        return fingerprint_directory(snapshot, cache_dir=cache_dir)
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise CheckpointNotFoundError(
            f"base model {resolved!r} is not a local directory and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE is set: download it first or point "
            "TWIN_BASE_MODEL at a local checkpoint"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(resolved, files_metadata=True)
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as exc:
        raise CheckpointNotFoundError(
            f"base model {resolved!r} is not a local directory, not in the Hugging Face cache, and "
            f"not a model on the hub ({type(exc).__name__})"
        ) from exc
    return fingerprint_from_hub_siblings(
        info.siblings or [], location=f"{resolved}@{info.sha}", revision=info.sha or ""
    )
