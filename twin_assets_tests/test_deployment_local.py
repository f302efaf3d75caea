"""`deployed_endpoint` with the local target, for real: the `twin serve` process started by PID
through the CLI, a tiny Llama base with LoRA adapters registered in the registry, the author's
published index snapshot, and a run-scoped API key in the warehouse.

- a new approved version is smoke-tested by name while the old one serves, then becomes
  production, and the running service switches to it without a restart;
- a broken approved version fails the asset and leaves production AND the service on the old one;
- a new index alone re-deploys the same model (no promotion) and the answer comes from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import httpx
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource
from resources.sagemaker_endpoint import SageMakerEndpointResource
from resources.warehouse import WarehouseResource
from twin_assets.defs.deployment.assets import deployed_endpoint
from twin_assets.defs.partitions import AUTHORS_PARTITION
from twin_assets.domain.models import ModelCard
from twin_assets.domain.stores import VectorPoint
from twin_assets.serving.keys import KeyRing
from twin_assets.serving.snapshot import build_snapshot, publish_snapshot
from twin_assets.training import registry
from twin_assets_tests.conftest import free_port

AUTHOR = "maya-kowalski"
TEXTS = [
    "When a queue backs up, I measure before I tune: latency hides in retries.",
    "Small language models are boring, and boring is what production needs.",
    "Incremental processing without tears: watermarks leak, content hashes do not.",
]


def _adapter(base: Path, out: Path, seed: int, broken: bool = False) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # random weights on the output head (as in the evaluation tests): the untrained tiny base
    # alone may answer nothing at all, which the smoke request rightly refuses
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base)),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "lm_head"]),
    )
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if "lora_A" in name or "lora_B" in name:
            param.data = torch.randn(param.shape, generator=generator) * (20.0 if "lora_B" in name else 1.0)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    if broken:  # weights that cannot be read: the service must fail to load this version
        (out / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    return out


def _register(
    artifacts: ArtifactStoreResource, base: Path, root: Path, version: str, broken: bool = False
) -> None:
    adapter = _adapter(base, root / f"adapter-{version}", seed=len(version) + int(broken), broken=broken)
    card = ModelCard(
        author_id=AUTHOR,
        kind="dpo",
        version=version,
        base_model=str(base),
        method="lora",
        dataset_kind="preference",
        dataset_version="d1",
        code_version="c1",
        lineage={"base_model": {"resolved": str(base)}},
        smoke_test=True,
    )
    registry.publish_model(artifacts, card, adapter)


def _publish_index(artifacts: ArtifactStoreResource, embedder: EmbedderResource, texts: list[str]) -> str:
    vectors = embedder.embed(texts)
    points = [
        VectorPoint(
            id=f"c{i}",
            payload={
                "chunk_id": f"c{i}",
                "author_id": AUTHOR,
                "document_id": f"d{i}",
                "category": "posts",
                "platform": "linkedin",
                "link": f"https://example.com/maya/{i}",
                "title": f"Post {i}",
                "content": text,
            },
            vector=[float(x) for x in vectors[i]],
        )
        for i, text in enumerate(texts)
    ]
    return publish_snapshot(artifacts, AUTHOR, build_snapshot(points, {}, embedder.model_name))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mongo_server):
    from twin_assets.training.base_model import build_tiny_llama

    root = tmp_path_factory.mktemp("deploy-local")
    base = build_tiny_llama(root / "tiny-llama", TEXTS * 4)
    artifacts = ArtifactStoreResource(root_dir=str(root / "data" / "artifacts"))
    embedder = EmbedderResource(batch_size=8)
    for version in ("v1", "v2"):
        _register(artifacts, base, root, version)
    _register(artifacts, base, root, "v3broken", broken=True)
    index = _publish_index(artifacts, embedder, TEXTS)
    registry.set_production(artifacts, AUTHOR, "dpo", "v1")  # the version a past deployment left
    port = free_port()
    env = {
        "TWIN_DATA_DIR": str(root / "data"),
        "TWIN_ARTIFACT_DIR": artifacts.root_dir,
        "TWIN_MONGO_URI": mongo_server.uri,
        "TWIN_MONGO_DATABASE": "deploy_local",
        "TWIN_SERVE_PORT": str(port),
        "TWIN_SERVE_BASE_MODEL": str(base),
        "TWIN_SERVE_AUTHORS": AUTHOR,
        "TWIN_SERVE_REFRESH_S": "0.5",
        "TWIN_SERVE_DEFAULT_MAX_TOKENS": "8",
        "TWIN_SERVE_RATE_PER_MINUTE": "0",
    }
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    warehouse = WarehouseResource(uri=mongo_server.uri, database="deploy_local")
    resources = {
        "artifacts": artifacts,
        "warehouse": warehouse,
        "sagemaker_endpoint": SageMakerEndpointResource(
            service_url=f"http://127.0.0.1:{port}", start_timeout_s=240, switch_timeout_s=60
        ),
    }
    yield {
        "root": root,
        "artifacts": artifacts,
        "embedder": embedder,
        "resources": resources,
        "url": f"http://127.0.0.1:{port}",
        "index": index,
        "warehouse": warehouse,
    }
    from twin_assets import server

    server.stop()
    mp.undo()


def _materialize(setup, approved: str):
    setup["artifacts"].write_alias(registry.model_key(AUTHOR, "dpo"), registry.APPROVED_ALIAS, approved)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(AUTHORS_PARTITION, [AUTHOR])
        return dg.materialize(
            [deployed_endpoint],
            resources=setup["resources"],
            instance=instance,
            partition_key=AUTHOR,
            raise_on_error=False,
        )


def _ask(setup, version: str | None = None) -> dict:
    """The service as a client sees it, with a key of the test's own."""
    ring = KeyRing(setup["warehouse"].get_store())
    raw, record = ring.create("test client", authors=[AUTHOR])
    try:
        body = {"question": "What do you write about queues?", **({"version": version} if version else {})}
        response = httpx.post(
            f"{setup['url']}/v1/twins/{AUTHOR}/answer",
            json=body,
            headers={"Authorization": f"Bearer {raw}"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        return response.json()
    finally:
        ring.revoke(record.id)


def test_new_version_goes_live_only_after_its_smoke_request(setup):
    result = _materialize(setup, "v2")
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    meta = result.asset_materializations_for_node("deployed_endpoint")[0].metadata
    assert meta["target"].value == "local" and meta["model_version"].value == "v2"
    assert meta["rollback_version"].value == "v1" and meta["promoted"].value is True
    assert meta["index_version"].value == setup["index"]
    assert meta["smoke_citations"].value >= 1 and meta["smoke_latency_ms"].value > 0
    assert meta["details"].value["service_started"] is True  # it was not running: started by PID
    assert registry.production_version(setup["artifacts"], AUTHOR) == ("dpo", "v2")
    served = _ask(setup)
    assert served["model_version"] == "v2" and served["citations"]
    # the run's own key is revoked, and it never reached a log line or the metadata
    keys = KeyRing(setup["warehouse"].get_store()).list()
    smoke_keys = [k for k in keys if k.name.startswith("deployed_endpoint")]
    assert smoke_keys and all(not k.active for k in smoke_keys)
    logged = json.dumps([str(e.message) for e in result.all_events]) + json.dumps(
        {k: str(v.value) for k, v in meta.items()}
    )
    assert all(k.prefix not in logged for k in smoke_keys)  # every key starts with its prefix


def test_broken_version_fails_and_the_old_one_keeps_serving(setup):
    before = registry.production_version(setup["artifacts"], AUTHOR)
    result = _materialize(setup, "v3broken")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.event_specific_data)
    assert "v3broken" in message and "smoke request" in message
    assert registry.production_version(setup["artifacts"], AUTHOR) == before
    assert _ask(setup)["model_version"] == before[1]  # the service never switched


def test_new_index_alone_refreshes_the_endpoint_without_promotion(setup):
    new_index = _publish_index(
        setup["artifacts"], setup["embedder"], [*TEXTS, "Queues again: backpressure beats retries."]
    )
    assert new_index != setup["index"]
    result = _materialize(setup, "v2")
    assert result.success
    meta = result.asset_materializations_for_node("deployed_endpoint")[0].metadata
    assert meta["index_version"].value == new_index and meta["promoted"].value is False
    assert meta["details"].value["service_started"] is False  # the same process, no restart
    assert _ask(setup)["index_version"] == new_index
