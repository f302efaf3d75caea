"""API keys against the real embedded warehouse: stored hashed, verified, scoped, revoked,
cached briefly, and never stored or echoed in clear."""

from __future__ import annotations

import hashlib

import pytest
from pymongo.errors import DuplicateKeyError

from resources.warehouse import API_KEYS
from twin_assets.domain.serving import ApiKeyRecord
from twin_assets.serving.keys import (
    KeyRequestError,
    KeyRing,
    KeyStoreUnavailable,
    hash_key,
    redact_keys,
)


class CountingStore:
    """The real store, counting hash lookups (what the cache saves)."""

    def __init__(self, store):
        self.store = store
        self.lookups = 0

    def insert_key(self, record):
        self.store.insert_key(record)

    def find_key_by_hash(self, key_hash):
        self.lookups += 1
        return self.store.find_key_by_hash(key_hash)

    def list_keys(self):
        return self.store.list_keys()

    def revoke_key(self, key_id):
        return self.store.revoke_key(key_id)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(warehouse):
    return warehouse.get_store()


@pytest.fixture
def db(warehouse):
    return warehouse.get_client()[warehouse.database]


def test_a_key_is_stored_as_its_hash_and_verifies(store, db):
    ring = KeyRing(store)
    raw, record = ring.create("ci runner", ["alice"])
    assert raw.startswith("twin_") and len(raw) >= 45
    assert record.hash == hashlib.sha256(raw.encode()).hexdigest() == hash_key(raw)
    assert raw.startswith(record.prefix) and len(record.prefix) == len("twin_") + 8
    stored = list(db[API_KEYS].find({}))
    assert len(stored) == 1 and raw not in repr(stored) and stored[0]["_id"] == record.id
    assert stored[0]["hash"] == record.hash and stored[0]["authors"] == ["alice"]

    found = ring.verify(raw)
    assert found is not None and found.id == record.id and found.authors == ["alice"]
    assert found.created_at.tzinfo is not None and found.active
    assert ring.verify(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None  # one character off
    assert ring.verify("") is None and ring.verify(None) is None
    assert ring.verify("twin_" + "x" * 500) is None  # absurdly long: not even hashed


def test_scope(store):
    ring = KeyRing(store)
    _, scoped = ring.create("alice only", ["alice", "alice", " bob "])
    _, everyone = ring.create("admin")
    assert scoped.authors == ["alice", "bob"] and everyone.authors is None
    assert ring.allows(scoped, "alice") and ring.allows(scoped, "bob")
    assert not ring.allows(scoped, "carol")
    assert ring.allows(everyone, "carol")
    assert not ring.allows(None, "alice")
    revoked = everyone.model_copy(update={"revoked_at": everyone.created_at})
    assert not ring.allows(revoked, "alice")


def test_bad_requests_are_refused_with_a_reason(store):
    ring = KeyRing(store)
    with pytest.raises(KeyRequestError, match="name"):
        ring.create("   ")
    with pytest.raises(KeyRequestError, match="at most"):
        ring.create("x" * 101)
    with pytest.raises(KeyRequestError, match="empty author scope"):
        ring.create("nobody", [" ", ""])
    assert ring.list() == []


def test_revoke_by_id_prefix_or_key_takes_effect_at_once(store):
    ring = KeyRing(store, cache_ttl_s=60)
    raw1, k1 = ring.create("one")
    raw2, k2 = ring.create("two")
    raw3, k3 = ring.create("three")
    for raw in (raw1, raw2, raw3):
        assert ring.verify(raw) is not None  # now cached for a minute
    assert ring.revoke(k1.id)
    assert ring.verify(raw1) is None  # the in-process cache was invalidated
    assert not ring.revoke(k1.id)  # already revoked
    assert ring.revoke(k2.prefix) and ring.verify(raw2) is None
    assert ring.revoke(raw3) and ring.verify(raw3) is None  # the whole key pasted
    assert not ring.revoke("key-doesnotexist") and not ring.revoke("")
    listed = {k.id: k for k in ring.list()}
    assert [k.id for k in ring.list()] == [k1.id, k2.id, k3.id]  # oldest first
    assert all(listed[k].revoked_at is not None and listed[k].revoked_at.tzinfo for k in listed)


def test_an_ambiguous_prefix_names_the_candidates(store):
    ring = KeyRing(store)
    for i in range(2):
        store.insert_key(ApiKeyRecord(id=f"key-{i}", name=f"k{i}", prefix="twin_SAMEPREF", hash=f"h{i}"))
    with pytest.raises(KeyRequestError, match="key-0, key-1"):
        ring.revoke("twin_SAMEPREF")
    assert ring.revoke("key-0") and ring.revoke("twin_SAMEPREF")  # only one active one left
    assert all(not k.active for k in ring.list())


def test_two_keys_never_share_a_hash(store):
    store.insert_key(ApiKeyRecord(id="a", name="a", prefix="twin_a", hash="same"))
    with pytest.raises(DuplicateKeyError):
        store.insert_key(ApiKeyRecord(id="b", name="b", prefix="twin_b", hash="same"))


def test_verify_is_cached_briefly_and_sees_revocations_from_elsewhere(store):
    clock = Clock()
    counting = CountingStore(store)
    service = KeyRing(counting, cache_ttl_s=5, clock=clock)
    cli = KeyRing(store)  # another process: `twin keys revoke` while the service runs
    raw, record = cli.create("svc")
    for _ in range(10):
        assert service.verify(raw) is not None
    assert counting.lookups == 1
    assert service.verify("twin_unknownkeyunknownkeyunknown") is None
    assert service.verify("twin_unknownkeyunknownkeyunknown") is None
    assert counting.lookups == 2  # unknown keys are cached too
    assert service.verify("sk-not-ours") is None and counting.lookups == 2  # not ours: no lookup

    assert cli.revoke(record.id)
    clock.now += 4.9
    assert service.verify(raw) is not None  # still cached: the TTL bounds the delay
    clock.now += 0.2
    assert service.verify(raw) is None
    assert counting.lookups == 3


def test_a_cache_never_grows_past_its_size(store):
    ring = KeyRing(store, cache_size=3)
    for i in range(10):
        ring.verify(f"twin_{i:040d}")
    assert len(ring._cache) == 3


def test_a_store_outage_is_an_unavailable_error_not_an_anonymous_request(store):
    class Broken(CountingStore):
        def find_key_by_hash(self, key_hash):
            raise ConnectionError(f"server down while looking up {key_hash}")

    raw, _ = KeyRing(store).create("k")
    with pytest.raises(KeyStoreUnavailable) as info:
        KeyRing(Broken(store)).verify(raw)
    assert hash_key(raw) not in str(info.value) and raw not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_redaction():
    raw = "twin_" + "Ab3-_" * 8
    text = f"my key is {raw}, please help; also twin_short stays"
    out = redact_keys(text)
    assert raw not in out and "twin_[REDACTED]" in out and "twin_short stays" in out
