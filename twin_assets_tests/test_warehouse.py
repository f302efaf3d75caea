"""The warehouse's contract, checked through stock pymongo against a real wire-protocol server."""

from __future__ import annotations

import multiprocessing as mp

import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from twin_assets.domain.documents import (
    Author,
    AuthorLink,
    Category,
    CrawlFailure,
    Platform,
    RawDocument,
    RepoFile,
)


def _article(link: str, content: str = "Measure first. Then chunk.", author: str = "maya") -> RawDocument:
    return RawDocument(
        author_id=author,
        platform=Platform.MEDIUM,
        category=Category.ARTICLES,
        link=link,
        title="Chunking",
        content=content,
    )


def _db(warehouse):
    """The warehouse database through stock pymongo (the store hides its collections)."""
    return warehouse.get_client()[warehouse.database]


def test_upsert_is_idempotent_and_detects_changes(warehouse):
    store = warehouse.get_store()
    docs = [_article("https://medium.com/@m/a"), _article("https://medium.com/@m/b")]
    first = store.upsert_documents(docs)
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)

    stored_at = _db(warehouse)["articles"].find_one({"link": docs[0].link})["stored_at"]
    again = store.upsert_documents([_article("https://medium.com/@m/a"), _article("https://medium.com/@m/b")])
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    # unchanged pages are not rewritten at all
    assert _db(warehouse)["articles"].find_one({"link": docs[0].link})["stored_at"] == stored_at

    edited = store.upsert_documents([_article("https://medium.com/@m/a", content="Measure twice.")])
    assert (edited.new, edited.updated, edited.unchanged) == (0, 1, 0)
    assert _db(warehouse)["articles"].count_documents({"author_id": "maya"}) == 2
    got = {d.link: d.content for d in store.get_documents("maya")}
    assert got["https://medium.com/@m/a"] == "Measure twice."


def test_unique_index_refuses_a_second_copy_of_a_link(warehouse):
    store = warehouse.get_store()
    store.upsert_documents([_article("https://medium.com/@m/a")])
    with pytest.raises(DuplicateKeyError):
        _db(warehouse)["articles"].insert_one(
            {"_id": "other-id", "author_id": "maya", "link": "https://medium.com/@m/a"}
        )
    assert store.duplicate_links("maya") == []


def test_same_link_twice_in_one_batch_is_stored_once(warehouse):
    store = warehouse.get_store()
    stats = store.upsert_documents([_article("https://x.dev/a", "one"), _article("https://x.dev/a", "two")])
    assert stats.new == 1
    assert [d.content for d in store.get_documents("maya")] == ["two"]


def test_authors_are_kept_apart(warehouse):
    store = warehouse.get_store()
    store.upsert_documents(
        [_article("https://x.dev/a", author="maya"), _article("https://x.dev/a", author="ola")]
    )
    assert len(store.get_documents("maya")) == 1
    assert len(store.get_documents("ola")) == 1


def test_repository_files_round_trip_byte_for_byte(warehouse):
    store = warehouse.get_store()
    code = "def f(x):\n\tif x:\n        return  x  \n\n\n# trailing spaces   \n"
    repo = RawDocument(
        author_id="maya",
        platform=Platform.GITHUB,
        category=Category.REPOSITORIES,
        link="https://github.com/maya/chunkwise",
        title="chunkwise",
        content=code,
        files=[RepoFile(path="src/f.py", content=code, language="python", size=len(code))],
    )
    store.upsert_documents([repo])
    (back,) = store.get_documents("maya", [Category.REPOSITORIES])
    assert back.files[0].content == code
    assert back.content_hash == repo.content_hash


def test_authors_and_failures(warehouse):
    store = warehouse.get_store()
    author = Author(id="maya", full_name="Maya", links=[AuthorLink(url="https://medium.com/@m")])
    store.upsert_author(author)
    store.upsert_author(author.model_copy(update={"full_name": "Maya K."}))
    assert [a.full_name for a in store.list_authors()] == ["Maya K."]
    store.record_failures(
        "maya",
        [CrawlFailure(author_id="maya", link="https://x.dev/404", kind="http_error", reason="HTTP 404")],
    )
    store.record_failures(
        "maya",
        [CrawlFailure(author_id="maya", link="https://x.dev/404", kind="http_error", reason="HTTP 410")],
    )
    (failure,) = store.list_failures("maya")
    assert failure.reason == "HTTP 410"
    assert store.clear_failures("maya", ["https://x.dev/404"]) == 1
    assert store.list_failures("maya") == []


def test_empty_documents_are_reported(warehouse):
    store = warehouse.get_store()
    store.upsert_documents([_article("https://x.dev/a", content="   ")])
    assert store.empty_documents("maya") == [{"category": "articles", "link": "https://x.dev/a"}]


def _concurrent_writer(uri: str, database: str, worker: int) -> None:
    from resources.warehouse import WarehouseResource

    store = WarehouseResource(uri=uri, database=database).get_store()
    for i in range(30):
        # every worker writes the same 30 links: the store must end with exactly 30
        store.upsert_documents([_article(f"https://x.dev/{i}", content=f"v{i}")])


def test_concurrent_writers_never_duplicate(warehouse, mongo_server):
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_concurrent_writer, args=(mongo_server.uri, warehouse.database, w))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    store = warehouse.get_store()
    assert _db(warehouse)["articles"].count_documents({"author_id": "maya"}) == 30
    assert store.duplicate_links("maya") == []


def test_credentials_against_the_embedded_server_are_a_clear_error(mongo_server):
    """nx-27017 has no authentication: a URI with a user and password used to die with
    `KeyError: 'payload'` inside pymongo's SCRAM handshake. Now the error says what is wrong,
    without the password (the CLI prints it as a user error: an EmbeddedMongoError)."""
    from resources.embedded_mongo import EmbeddedMongoError
    from resources.warehouse import WarehouseAuthUnsupported, WarehouseResource

    uri = mongo_server.uri.replace("mongodb://", "mongodb://twin:s3cr3t-pw@")
    resource = WarehouseResource(uri=uri, database="auth_test", server_selection_timeout_ms=5000)
    with pytest.raises(WarehouseAuthUnsupported) as info:
        resource.get_store()
    message = str(info.value)
    assert "does not support authentication" in message and "TWIN_MONGO_URI" in message
    assert f"127.0.0.1:{mongo_server.port}" in message
    assert "s3cr3t-pw" not in message and info.value.__cause__ is None
    assert isinstance(info.value, EmbeddedMongoError)
    from twin_assets.cli import user_error_message

    assert (user_error_message(info.value) or "").startswith("embedded warehouse: TWIN_MONGO_URI carries")
    resource.teardown_after_execution(None)  # type: ignore[arg-type]
    # the same server without credentials works
    WarehouseResource(uri=mongo_server.uri, database="auth_test").get_store().list_authors()


def test_embedded_server_start_is_reentrant_and_stops_by_pid(tmp_path):
    from resources.embedded_mongo import EmbeddedMongo
    from twin_assets_tests.conftest import free_port

    server = EmbeddedMongo(data_dir=tmp_path / "m", port=free_port())
    pid = server.start()
    assert server.start() == pid  # second call reuses the running server
    client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    client["d"]["c"].insert_one({"_id": 1})
    client.close()
    assert server.stop()
    assert not server.is_listening()
    # data survives a restart
    server.start()
    client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    assert client["d"]["c"].find_one({"_id": 1}) == {"_id": 1}
    client.close()
    server.stop()


def test_stale_pid_file_never_signals_an_unrelated_process(tmp_path):
    """After a reboot the PID in the file may belong to anything: it must not be killed."""
    import subprocess

    from resources.embedded_mongo import EmbeddedMongo
    from twin_assets_tests.conftest import free_port

    server = EmbeddedMongo(data_dir=tmp_path / "m", port=free_port())
    server.data_dir.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "30"])
    try:
        server.pid_file.write_text(str(other.pid))
        server.server_pid_file.write_text(str(other.pid))
        assert server.pid() is None
        assert server.stop() is False
        assert other.poll() is None  # still running: not SIGTERMed nor SIGKILLed
        assert not server.pid_file.exists()  # the stale file is dropped
    finally:
        other.kill()
        other.wait()


def test_foreign_listener_on_the_port_is_refused(tmp_path):
    """Whatever else listens on the port is never used (or reported) as our server."""
    import socket

    from resources.embedded_mongo import EmbeddedMongo, EmbeddedMongoError

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        server = EmbeddedMongo(data_dir=tmp_path / "m", port=port)
        with pytest.raises(EmbeddedMongoError, match="TWIN_MONGO_PORT"):
            server.start()
        assert server.pid() is None


def test_another_data_dirs_server_on_the_port_is_refused(mongo_server, tmp_path):
    """Another checkout's nx-27017 (other data dir) on our port is not ours either."""
    from resources.embedded_mongo import EmbeddedMongo, EmbeddedMongoError

    server = EmbeddedMongo(data_dir=tmp_path / "other", port=mongo_server.port)
    with pytest.raises(EmbeddedMongoError, match="in use by another process"):
        server.start()
    assert server.stop() is False
    assert mongo_server.is_listening() and mongo_server.pid() is not None


def test_concurrent_starts_agree_on_one_server(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from resources.embedded_mongo import EmbeddedMongo
    from twin_assets_tests.conftest import free_port

    server = EmbeddedMongo(data_dir=tmp_path / "m", port=free_port())
    try:
        with ThreadPoolExecutor(3) as pool:
            pids = list(pool.map(lambda _: server.start(), range(3)))
        pid = server.pid()
        assert len(set(pids)) == 1 and pid is not None and pids[0] == pid > 0
    finally:
        server.stop()
