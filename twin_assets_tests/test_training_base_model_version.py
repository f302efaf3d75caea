"""The base model's version is its CONTENT: weights, tokenizer and chat template, cached by stat."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from resources.artifacts import ArtifactStoreResource
from twin_assets.training import fingerprints as cf


def _checkpoint(root: Path) -> Path:
    """A checkpoint directory laid out like a `save_pretrained` one (content is irrelevant here)."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "vocab_size": 512,
            }
        )
    )
    (root / "model.safetensors").write_bytes(os.urandom(300_000))
    (root / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}}))
    (root / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    (root / "generation_config.json").write_text("{}")
    return root


@pytest.fixture
def counted(monkeypatch):
    """Counts the files actually read (every re-hash goes through `file_sha256`)."""
    reads: list[str] = []
    real = cf.file_sha256

    def counting(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(cf, "file_sha256", counting)
    return reads


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_one_byte_of_weights_changes_the_fingerprint(tmp_path):
    ckpt = _checkpoint(tmp_path / "m")
    cache = tmp_path / "cache"
    before = cf.directory_digest(ckpt, cache_dir=cache)
    assert before == cf.directory_digest(ckpt, cache_dir=cache)  # deterministic
    _flip_byte(ckpt / "model.safetensors", 123_456)
    after = cf.directory_digest(ckpt, cache_dir=cache)
    assert after != before
    _flip_byte(ckpt / "model.safetensors", 123_456)  # back to the original bytes
    assert cf.directory_digest(ckpt, cache_dir=cache) == before


def test_touch_without_content_change_rehashes_to_the_same_digest(tmp_path, counted):
    ckpt = _checkpoint(tmp_path / "m")
    cache = tmp_path / "cache"
    before = cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0)
    counted.clear()
    os.utime(ckpt / "model.safetensors", ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    after = cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0)
    assert counted == ["model.safetensors"]  # the stat changed: re-read, and only that file
    assert after.digest == before.digest


def test_cache_skips_unchanged_files_and_rehashes_changed_ones(tmp_path, counted):
    ckpt = _checkpoint(tmp_path / "m")
    cache = tmp_path / "cache"
    first = cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0)
    assert sorted(counted) == sorted(p.name for p in ckpt.iterdir())
    assert first.rehashed_files == first.files == 5 and first.source == "content-sha256"
    counted.clear()
    second = cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0)
    assert counted == [] and second.rehashed_files == 0 and second.digest == first.digest
    (ckpt / "generation_config.json").write_text('{"temperature": 0.7}')
    third = cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0)
    assert counted == ["generation_config.json"] and third.digest != first.digest
    # a torn cache file costs a re-hash, never a wrong answer
    for f in cache.iterdir():
        f.write_text("{not json")
    counted.clear()
    assert cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0).digest == third.digest
    assert len(counted) == 5


def test_files_written_within_the_racy_window_are_not_cached(tmp_path, counted):
    """A write in the same timestamp tick as the hash must not be hidden by the cache."""
    ckpt = _checkpoint(tmp_path / "m")
    cache = tmp_path / "cache"
    cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=3600)
    cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=3600)
    assert len(counted) == 10  # just written: hashed on every call until they age


def test_same_size_rewrite_with_restored_mtime_is_detected(tmp_path):
    """`cp -p`-style rewrites keep size and mtime; the ctime in the cache key catches them."""
    ckpt = _checkpoint(tmp_path / "m")
    cache = tmp_path / "cache"
    weights = ckpt / "model.safetensors"
    before = cf.directory_digest(ckpt, cache_dir=cache)
    assert cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0).digest == before  # cached
    st = weights.stat()
    time.sleep(0.05)  # let the filesystem's timestamp tick move on (ctime cannot be set back)
    with open(weights, "r+b") as f:  # in place: same inode, same size
        f.write(b"\x00" * 16)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_mtime_ns == st.st_mtime_ns and weights.stat().st_size == st.st_size
    assert cf.fingerprint_directory(ckpt, cache_dir=cache, racy_window_s=0).digest != before


def test_tokenizer_and_chat_template_changes_change_it_docs_do_not(tmp_path):
    ckpt = _checkpoint(tmp_path / "m")
    cache = tmp_path / "cache"
    seen = {cf.directory_digest(ckpt, cache_dir=cache)}
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages[0] }}"}))
    seen.add(cf.directory_digest(ckpt, cache_dir=cache))
    (ckpt / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    seen.add(cf.directory_digest(ckpt, cache_dir=cache))
    (ckpt / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "c": 1}}}))
    seen.add(cf.directory_digest(ckpt, cache_dir=cache))
    (ckpt / "sub").mkdir()
    (ckpt / "sub" / "spiece.model").write_bytes(b"sentencepiece")
    seen.add(cf.directory_digest(ckpt, cache_dir=cache))
    assert len(seen) == 5  # every model-file change gave a new fingerprint
    last = cf.directory_digest(ckpt, cache_dir=cache)
    (ckpt / "README.md").write_text("# a model card edit")
    (ckpt / "LICENSE").write_text("Apache-2.0")
    (ckpt / ".cache").mkdir()
    (ckpt / ".cache" / "download.lock").write_text("")
    assert cf.directory_digest(ckpt, cache_dir=cache) == last
    # renaming a file changes it too: paths are part of the fingerprint
    os.rename(ckpt / "chat_template.jinja", ckpt / "chat_template_old.jinja")
    assert cf.directory_digest(ckpt, cache_dir=cache) != last


def test_missing_or_empty_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(cf.CheckpointNotFoundError, match="no checkpoint"):
        cf.directory_digest(tmp_path / "nope", cache_dir=tmp_path / "c")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("docs only")
    with pytest.raises(cf.CheckpointNotFoundError, match="no model files"):
        cf.directory_digest(tmp_path / "empty", cache_dir=tmp_path / "c")


def _hf_cache(hub: Path, repo: str, files: dict[str, bytes], commit: str) -> Path:
    """The hub cache layout `huggingface_hub` writes: snapshot symlinks into content-named blobs."""
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        etag = hashlib.sha256(data).hexdigest()  # LFS etag = sha256 of the content
        (repo_dir / "blobs" / etag).write_bytes(data)
        (snap / name).symlink_to(Path("..", "..", "blobs", etag))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snap


def test_hf_cache_snapshot_uses_etags_without_reading_and_matches_hub_metadata(tmp_path, monkeypatch):
    from huggingface_hub.hf_api import BlobLfsInfo, RepoSibling

    def no_reads(path, *a, **k):
        raise AssertionError(f"read {path}: the HF blob name is already its content hash")

    monkeypatch.setattr(cf, "file_sha256", no_reads)
    files = {
        "config.json": b'{"hidden_size": 64}',
        "model.safetensors": os.urandom(4096),
        "tokenizer_config.json": b'{"chat_template": "x"}',
        "README.md": b"# card",
    }
    commit = "a" * 40
    _hf_cache(tmp_path / "hub", "org/tiny", files, commit)
    fp = cf.fingerprint_base_model("org/tiny", cache_dir=tmp_path / "c", hub_cache_dir=tmp_path / "hub")
    assert fp.source == "hf-cache-etags" and fp.revision == commit and fp.files == 3
    siblings = [
        RepoSibling(
            rfilename=n,
            size=len(d),
            blob_id="0" * 40,
            lfs=BlobLfsInfo(size=len(d), sha256=hashlib.sha256(d).hexdigest(), pointer_size=134),
        )
        for n, d in files.items()
    ]
    remote = cf.fingerprint_from_hub_siblings(siblings, location=f"org/tiny@{commit}", revision=commit)
    assert remote.digest == fp.digest  # fingerprinting before the download gives the same answer
    # a new commit with new weights -> a new fingerprint
    files["model.safetensors"] = os.urandom(4096)
    _hf_cache(tmp_path / "hub", "org/tiny", files, "b" * 40)
    newer = cf.fingerprint_base_model("org/tiny", cache_dir=tmp_path / "c", hub_cache_dir=tmp_path / "hub")
    assert newer.revision == "b" * 40 and newer.digest != fp.digest


def test_uncached_hub_model_offline_is_a_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(cf.CheckpointNotFoundError, match="not in the Hugging Face cache"):
        cf.fingerprint_base_model(
            "org/never-downloaded", cache_dir=tmp_path / "c", hub_cache_dir=tmp_path / "hub"
        )


def test_base_model_asset_version_follows_weights_and_drives_retraining(tmp_path, monkeypatch, counted):
    """No-op re-materialization: same data version, no file re-read, no retrain request.
    New weights under the same path and config.json: new data version, sft_model requested."""
    from resources.artifacts import ArtifactStoreResource
    from resources.sagemaker import SageMakerResource
    from resources.tracking import WandbResource
    from twin_assets.defs.partitions import authors_partitions
    from twin_assets.defs.training.assets import (
        INSTRUCTION_DATASET,
        PREFERENCE_DATASET,
        base_model,
        dpo_model,
        sft_model,
    )

    author = "maya-kowalski"
    ckpt = _checkpoint(tmp_path / "base")
    monkeypatch.setenv("TWIN_BASE_MODEL", str(ckpt))
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cf, "RACY_WINDOW_S", 0.0)
    defs = dg.Definitions(
        assets=[
            base_model,
            dg.AssetSpec(INSTRUCTION_DATASET, partitions_def=authors_partitions),
            dg.AssetSpec(PREFERENCE_DATASET, partitions_def=authors_partitions),
            sft_model,
            dpo_model,
        ],
        resources={
            "artifacts": ArtifactStoreResource(root_dir=str(tmp_path / "artifacts")),
            "wandb": WandbResource(),
            "sagemaker": SageMakerResource(),
        },
    )

    def materialize_base(instance) -> dg.AssetMaterialization:
        result = dg.materialize([base_model], instance=instance)
        assert result.success
        return result.asset_materializations_for_node("base_model")[0]

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [author])
        first = materialize_base(instance)
        assert first.metadata["fingerprint_source"].value == "content-sha256"
        assert first.metadata["layers"].value == 2 and first.metadata["fingerprint_files"].value == 5
        # the twin is already trained on this base and these datasets
        for key, version in (
            (INSTRUCTION_DATASET, "v1"),
            (PREFERENCE_DATASET, "p1"),
            (sft_model.key, "m1"),
            (dpo_model.key, "d1"),
        ):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=key, partition=author, tags={"dagster/data_version": version}
                )
            )
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert r.total_requested == 0

        counted.clear()
        again = materialize_base(instance)  # unchanged files
        assert counted == [] and again.metadata["rehashed_files"].value == 0
        assert again.tags["dagster/data_version"] == first.tags["dagster/data_version"]
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.total_requested == 0  # no retrain for a no-op base re-materialization

        _flip_byte(ckpt / "model.safetensors", 42)  # same name, same config.json, new weights
        changed = materialize_base(instance)
        assert counted == ["model.safetensors"]
        assert changed.tags["dagster/data_version"] != first.tags["dagster/data_version"]
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == {author}


def test_sft_version_follows_the_base_weights_not_just_their_name(tmp_path, tmp_data_dir):
    """Same base path, same config, same dataset: new weights are a new model version (and a
    training run); unchanged weights reuse the registered version without training."""
    from resources.tracking import WandbResource
    from twin_assets.training.config import SFTTrainingConfig
    from twin_assets.training.pipeline import train_and_register
    from twin_assets_tests.training_fixtures import AUTHOR, instruction_rows, tiny_model, write_dataset

    artifacts = ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))
    dataset = write_dataset(artifacts, "instruction", instruction_rows())
    base = tiny_model(tmp_path)
    cfg = SFTTrainingConfig(base_model=str(base), max_steps=1, max_length=256)
    tracker = WandbResource(enabled=False)
    kwargs = dict(
        kind="sft",
        author=AUTHOR,
        dataset_version=dataset,
        cfg=cfg,
        artifacts=artifacts,
        tracker=tracker,
        log=lambda m: None,
    )

    first = train_and_register(**kwargs)
    assert not first.reused
    fp = first.card.lineage["base_model"]["fingerprint"]
    assert fp and len(fp) == 64
    assert train_and_register(**kwargs).reused  # nothing changed: no training

    weights = next(p for p in base.iterdir() if p.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # new weights under the same name, path and config.json
    weights.write_bytes(bytes(data))
    second = train_and_register(**kwargs)
    assert not second.reused and second.card.version != first.card.version
    assert second.card.lineage["base_model"]["fingerprint"] != fp
