"""`twin keys create | list | revoke` against the real embedded warehouse (the key is printed
once, never listed, never stored), and `twin serve` handing its settings to the server module."""

from __future__ import annotations

import uuid

import pytest

from resources.warehouse import WarehouseResource
from twin_assets import cli
from twin_assets.serving.keys import KeyRing


@pytest.fixture
def env(monkeypatch, mongo_server, tmp_path):
    """The CLI's warehouse: the test server, a database of its own."""
    database = f"cli_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("TWIN_MONGO_URI", mongo_server.uri)
    monkeypatch.setenv("TWIN_MONGO_DATABASE", database)
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    return WarehouseResource(uri=mongo_server.uri, database=database)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_flow_never_shows_or_stores_the_key(env, capsys):
    code, out, err = run(capsys, "keys", "create", "ci runner", "--author", "alice", "--author", "bob")
    assert code == 0
    raw = out.strip()
    assert raw.startswith("twin_") and "\n" not in raw  # stdout is the key alone: KEY=$(twin keys create)
    assert "shown only this once" in err and raw not in err
    _, admin_out, _ = run(capsys, "keys", "create", "admin")
    admin = admin_out.strip()

    store = env.get_store()
    (record,) = [k for k in store.list_keys() if k.name == "ci runner"]
    assert record.authors == ["alice", "bob"] and KeyRing(store).verify(raw) is not None
    db = env.get_client()[env.database]
    everything = repr([list(db[name].find({})) for name in db.list_collection_names()])
    assert raw not in everything and admin not in everything

    code, listing, _ = run(capsys, "keys", "list")
    assert code == 0
    lines = listing.strip().splitlines()
    assert lines[0].split("\t") == ["id", "name", "prefix", "authors", "created", "revoked"]
    row = next(line.split("\t") for line in lines if line.startswith(record.id))
    assert row[1:4] == ["ci runner", record.prefix, "alice,bob"] and row[5] == "-"
    assert raw not in listing and admin not in listing and record.hash not in listing
    assert any(line.split("\t")[3] == "*" for line in lines[1:])  # the unscoped key

    code, out, _ = run(capsys, "keys", "revoke", record.prefix)
    assert code == 0 and f"revoked key {record.id}" in out
    assert KeyRing(store).verify(raw) is None and KeyRing(store).verify(admin) is not None
    code, out, _ = run(capsys, "keys", "revoke", record.id)
    assert code == 0 and "already revoked" in out
    _, listing, _ = run(capsys, "keys", "list")
    row = next(line.split("\t") for line in listing.splitlines() if line.startswith(record.id))
    assert row[5] != "-"

    code, out, err = run(capsys, "keys", "revoke", admin)  # the key itself works too
    assert code == 0 and admin not in out + err and KeyRing(store).verify(admin) is None


def test_key_mistakes_are_one_line_errors(env, capsys):
    code, _, err = run(capsys, "keys", "create", "x", "--author", "Not An Id")
    assert code == 1 and err.startswith("twin: ") and "'Not An Id' is not an author id" in err
    code, _, err = run(capsys, "keys", "create")
    assert code == 1 and "needs a name" in err
    code, _, err = run(capsys, "keys", "revoke", "key-nosuchkey")
    assert code == 1 and "no key matches 'key-nosuchkey'" in err
    forged = "twin_" + "A" * 43
    code, _, err = run(capsys, "keys", "revoke", forged)
    assert code == 1 and "no key matches the given key" in err and forged not in err
    assert len(err.strip().splitlines()) == 1
    assert env.get_store().list_keys() == []


def test_serve_passes_host_and_port_over_the_environment(monkeypatch, capsys, tmp_path):
    from twin_assets import server

    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    calls: list = []
    monkeypatch.setattr(server, "start", lambda settings: calls.append(settings) or 4242)
    monkeypatch.setattr(server, "status", lambda: {})
    monkeypatch.setattr(server, "stop", lambda: False)

    code, out, _ = run(capsys, "serve", "start", "--port", "9123")
    assert code == 0 and calls[0].port == 9123 and "http://127.0.0.1:9123 (pid 4242)" in out
    assert run(capsys, "serve", "status")[:2] == (1, "not running\n")
    assert run(capsys, "serve", "stop")[:2] == (0, "not running\n")

    code, _, err = run(capsys, "serve", "start", "--port", "70000")
    assert code == 1 and err.startswith("twin: serve settings: port:") and len(calls) == 1

    def refuse(settings):
        raise server.ServeError("127.0.0.1:9123 is in use by another process; set TWIN_SERVE_PORT")

    monkeypatch.setattr(server, "start", refuse)
    code, _, err = run(capsys, "serve", "start")
    assert code == 1 and "is in use by another process" in err
