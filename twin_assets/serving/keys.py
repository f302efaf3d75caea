"""API keys of the inference service: issued once, stored as a hash, optionally scoped to authors.

A key is `twin_` + 32 random bytes (URL-safe base64). It is shown once, when it is created;
the warehouse keeps its SHA-256 and a short prefix that tells keys apart in a listing. A slow
password hash (bcrypt, scrypt) would buy nothing here: it protects guessable secrets, and a
256-bit random key cannot be guessed, so a fast hash is as safe and costs nothing per request.

`verify` runs on every request, so its answers (a record, or "no such key") are cached in
process for a few seconds: a revocation in this process takes effect at once, one made
elsewhere (`twin keys revoke` while the service runs) within the cache's TTL. The cache is
keyed by the hash, so no key outlives the request that presented it.

Nothing here logs a key, and no error message quotes one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from twin_assets.domain.serving import ApiKeyRecord, new_id
from twin_assets.domain.stores import ApiKeyStore

KEY_PREFIX = "twin_"
PREFIX_CHARS = 8
"""Characters of the random part kept in the shown prefix (48 of the key's 256 bits)."""
MAX_KEY_CHARS = 256
KEY_PATTERN = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{20,}")
"""What a key looks like in free text (for redaction: a user may paste one into a question)."""
MAX_NAME_CHARS = 100


class KeyStoreUnavailable(RuntimeError):
    """The key store could not be asked (warehouse down): the service should answer 503, not
    let a request through or call it unauthenticated."""


class KeyRequestError(ValueError):
    """A key operation the caller can fix (bad name, ambiguous prefix); the message says how."""


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def redact_keys(text: str) -> str:
    """`text` with anything shaped like an API key replaced (for logs and stored prompts)."""
    return KEY_PATTERN.sub(KEY_PREFIX + "[REDACTED]", text)


class KeyRing:
    """Creates, verifies, lists and revokes keys over an `ApiKeyStore`."""

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        cache_ttl_s: float = 5.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if cache_ttl_s < 0 or cache_size < 0:
            raise ValueError("cache_ttl_s and cache_size must be >= 0")
        self._store = store
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._clock = clock
        self._lock = threading.Lock()
        # hash -> (record or None for "unknown/revoked", expiry)
        self._cache: OrderedDict[str, tuple[ApiKeyRecord | None, float]] = OrderedDict()
        # bumped by every revocation: a lookup that started before one is not cached (it may
        # have read the key while it was still active)
        self._generation = 0

    # -- issuing -----------------------------------------------------------------------------
    def create(self, name: str, authors: Sequence[str] | None = None) -> tuple[str, ApiKeyRecord]:
        """A new key: (the key, shown this once; its stored record). `authors` None: the key
        may ask every twin; otherwise only those authors'."""
        name = " ".join(str(name).split())
        if not name:
            raise KeyRequestError("a key needs a name (who or what uses it)")
        if len(name) > MAX_NAME_CHARS:
            raise KeyRequestError(f"a key name has at most {MAX_NAME_CHARS} characters")
        scope: list[str] | None = None
        if authors is not None:
            scope = sorted({a.strip() for a in authors if a and a.strip()})
            if not scope:
                raise KeyRequestError(
                    "an empty author scope would allow nothing; give no scope for every author"
                )
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            id="key-" + new_id()[:12],
            name=name,
            prefix=raw[: len(KEY_PREFIX) + PREFIX_CHARS],
            hash=hash_key(raw),
            authors=scope,
        )
        self._store.insert_key(record)
        return raw, record

    # -- checking ----------------------------------------------------------------------------
    def verify(self, raw_key: str | None) -> ApiKeyRecord | None:
        """The active record of `raw_key`, or None (no key, not a key, unknown or revoked).
        Raises `KeyStoreUnavailable` when the store cannot be asked."""
        if not raw_key or not isinstance(raw_key, str) or len(raw_key) > MAX_KEY_CHARS:
            return None
        if not raw_key.startswith(KEY_PREFIX):
            return None  # never one of ours: no lookup, no cache entry
        digest = hash_key(raw_key)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[1] > now:
                self._cache.move_to_end(digest)
                return hit[0]
            generation = self._generation
        try:
            record = self._store.find_key_by_hash(digest)
        except Exception as exc:  # the store's own error may quote the query (the hash): not kept
            raise KeyStoreUnavailable(f"API key store unavailable ({type(exc).__name__})") from None
        if record is not None and (not record.active or not hmac.compare_digest(record.hash, digest)):
            record = None
        self._remember(digest, record, now, generation)
        return record

    @staticmethod
    def allows(record: ApiKeyRecord | None, author: str) -> bool:
        """Whether the key may ask `author`'s twin (a revoked or missing key allows nothing)."""
        if record is None or not record.active:
            return False
        return record.authors is None or author in record.authors

    # -- managing ----------------------------------------------------------------------------
    def list(self) -> list[ApiKeyRecord]:
        return self._store.list_keys()

    def resolve(self, key_id_or_prefix: str) -> ApiKeyRecord | None:
        """The key named by its id, its shown prefix, or the key itself; None when nothing
        matches. An ambiguous prefix (two keys share it) is an error naming their ids."""
        wanted = key_id_or_prefix.strip()
        if not wanted:
            return None
        if wanted.startswith(KEY_PREFIX) and len(wanted) > len(KEY_PREFIX) + PREFIX_CHARS:
            return self._store.find_key_by_hash(hash_key(wanted))  # the whole key was given
        keys = self._store.list_keys()
        by_id = [k for k in keys if k.id == wanted]
        if by_id:
            return by_id[0]
        by_prefix = [k for k in keys if k.prefix == wanted]
        active = [k for k in by_prefix if k.active] or by_prefix
        if len(active) > 1:
            raise KeyRequestError(
                f"prefix {wanted} matches {len(active)} keys ({', '.join(k.id for k in active)}); use the id"
            )
        return active[0] if active else None

    def revoke(self, key_id_or_prefix: str) -> bool:
        """Revoke a key (by id, shown prefix, or the key itself). False when no such key exists
        or it was already revoked. Takes effect in this process at once."""
        record = self.resolve(key_id_or_prefix)
        if record is None:
            return False
        revoked = self._store.revoke_key(record.id)
        with self._lock:
            self._generation += 1
            self._cache.pop(record.hash, None)
        return revoked

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _remember(self, digest: str, record: ApiKeyRecord | None, now: float, generation: int) -> None:
        if self._ttl <= 0 or self._size <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._cache[digest] = (record, now + self._ttl)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
