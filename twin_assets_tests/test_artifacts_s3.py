"""ArtifactStoreResource against a moto S3 server on 127.0.0.1: the card is published last,
aliases are read fresh from S3, and a stored key cannot write outside its directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resources.artifacts import ArtifactStoreResource
from twin_assets_tests.conftest import s3_artifact_store

BUCKET = "twin-artifacts"


@pytest.fixture
def bucket(moto_url, request) -> str:
    name = f"b-{request.node.name.replace('_', '-')[:40].lower()}"
    s3_artifact_store(moto_url, Path("/nonexistent"), name)._client().create_bucket(Bucket=name)
    return name


def test_put_dir_uploads_cards_last(moto_url, bucket, tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("card.json", "model_card.json", "a.parquet", "test.parquet", "sub/card.json", "sub/x.bin"):
        (src / name).write_text(name)
    store = s3_artifact_store(moto_url, tmp_path / "root", bucket)
    uploaded: list[str] = []
    real_client = ArtifactStoreResource._client

    def recording_client(self):
        client = real_client(self)
        upload = client.upload_file

        def upload_file(filename, bucket_name, key, *args, **kwargs):
            uploaded.append(key)
            return upload(filename, bucket_name, key, *args, **kwargs)

        client.upload_file = upload_file
        return client

    monkeypatch.setattr(ArtifactStoreResource, "_client", recording_client)
    store.put_dir("datasets/a/instruction/v1", src)
    rel = [k.removeprefix("llm-twin/datasets/a/instruction/v1/") for k in uploaded]
    assert sorted(rel) == sorted(
        ["a.parquet", "card.json", "model_card.json", "sub/card.json", "sub/x.bin", "test.parquet"]
    )
    assert set(rel[-2:]) == {"card.json", "model_card.json"}  # the completeness markers last
    # the local copy is complete and replaces an older copy; no staging dirs are left behind
    (src / "a.parquet").write_text("new")
    store.put_dir("datasets/a/instruction/v1", src)
    local = store.local_path("datasets/a/instruction/v1")
    assert (local / "a.parquet").read_text() == "new" and (local / "card.json").exists()
    assert sorted(p.name for p in local.parent.iterdir()) == ["v1"]


def test_alias_is_read_from_s3_not_a_stale_mirror(moto_url, bucket, tmp_path):
    writer = s3_artifact_store(moto_url, tmp_path / "w1", bucket)
    reader = s3_artifact_store(moto_url, tmp_path / "w2", bucket)
    assert reader.read_alias("models/a/sft", "latest") is None
    writer.write_alias("models/a/sft", "latest", "m1")
    assert reader.read_alias("models/a/sft", "latest") == "m1"  # now mirrored locally on w2
    writer.write_alias("models/a/sft", "latest", "m2")
    assert reader.read_alias("models/a/sft", "latest") == "m2"
    assert json.loads(reader.local_path("models/a/sft/aliases/latest.json").read_text()) == {"version": "m2"}
    # immutable version content is still served from the local mirror (no S3 round trip)
    writer.put_json("models/a/sft/m2/model_card.json", {"version": "m2"})
    assert reader.get_json("models/a/sft/m2/model_card.json") == {"version": "m2"}


def test_get_dir_refuses_keys_escaping_the_target(moto_url, bucket, tmp_path):
    store = s3_artifact_store(moto_url, tmp_path / "root", bucket)
    client = store._client()
    prefix = "llm-twin/models/a/sft/m1/adapter/"
    client.put_object(Bucket=bucket, Key=prefix + "adapter_config.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key=prefix + "../../../../../evil.txt", Body=b"pwned")
    with pytest.raises(ValueError, match="outside"):
        store.get_dir("models/a/sft/m1/adapter")
    root = tmp_path / "root"
    assert not [p for p in tmp_path.rglob("evil.txt")]
    assert not (root / "models/a/sft/m1/adapter").exists()  # no half-downloaded copy either
    assert not [p for p in (root / "models/a/sft/m1").iterdir()]
    # a clean version downloads completely
    good = "llm-twin/models/a/sft/m2/adapter/"
    client.put_object(Bucket=bucket, Key=good + "adapter_config.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key=good + "tok/tokenizer.json", Body=b"[]")
    path = store.get_dir("models/a/sft/m2/adapter")
    assert (path / "adapter_config.json").read_text() == "{}"
    assert (path / "tok/tokenizer.json").read_text() == "[]"


def test_published_model_version_carries_its_loss_curve_to_s3(moto_url, bucket, tmp_path):
    from twin_assets.training import registry

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    store = s3_artifact_store(moto_url, tmp_path / "root", bucket)
    card = registry.ModelCard(
        author_id="a",
        kind="sft",
        version="m1",
        base_model="base",
        method="lora",
        dataset_kind="instruction",
        dataset_version="v1",
        code_version="c1",
    )
    registry.publish_model(store, card, adapter, extra_files={registry.LOSS_CURVE_FILE: b"\x89PNG plot"})
    other = s3_artifact_store(moto_url, tmp_path / "other-worker", bucket)
    key = f"{registry.model_key('a', 'sft', 'm1')}/{registry.LOSS_CURVE_FILE}"
    body = other._client().get_object(Bucket=bucket, Key=other._s3_key(key))["Body"].read()
    assert body == b"\x89PNG plot"
    assert registry.registered_card(other, "a", "sft", "m1").version == "m1"
