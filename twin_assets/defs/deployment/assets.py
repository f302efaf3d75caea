"""`deployed_endpoint` per author: the version the deploy gate approved, serving with the
author's latest index on the configured target, smoke-tested, then made `production`.

Thin asset: the order of operations (deploy, smoke request by explicit version, move the alias,
confirm) is `twin_assets.deployment.flow.deploy_version`; the targets are in
`twin_assets.deployment.local` (the `twin serve` process) and `...sagemaker` (an endpoint with
autoscaling); `resources/sagemaker_endpoint.py` says which one and how.

WHEN it runs (automation): after any materialization of its deps, once the deploy gate of the
latest evaluation passed. A new `embedded_chunks` alone (new documents, same model) therefore
re-runs only this asset: it re-deploys the same model version, whose smoke request must now be
answered from the new index version (the service follows the index alias by itself), so the
asset's metadata records which index the live twin retrieves from. Nothing retrains: the model
assets retrain on a new DATASET version only. A re-run on an unchanged version moves no alias.
"""

import dagster as dg
from pydantic import Field

from resources.artifacts import ArtifactStoreResource
from resources.sagemaker_endpoint import SageMakerEndpointResource
from resources.warehouse import WarehouseResource
from twin_assets.defs.partitions import authors_partitions
from twin_assets.defs.training.assets import upstream_data_version
from twin_assets.deployment.flow import DeploymentRecord, Target, deploy_version
from twin_assets.deployment.local import LocalService, LocalTarget
from twin_assets.deployment.sagemaker import SageMakerTarget
from twin_assets.deployment.smoke import DEFAULT_QUESTION, DeploymentFailed
from twin_assets.domain.documents import sha256_text
from twin_assets.domain.models import ModelKind
from twin_assets.evaluation.report import load_report
from twin_assets.serving.keys import KeyRing
from twin_assets.training import registry

DPO_MODEL = dg.AssetKey("dpo_model")
EVALUATION_REPORT = dg.AssetKey("evaluation_report")
EMBEDDED_CHUNKS = dg.AssetKey("embedded_chunks")
SMOKE_KEY_NAME = "deployed_endpoint smoke request"


class DeployedEndpointConfig(dg.Config):
    smoke_question: str = Field(
        default=DEFAULT_QUESTION, description="asked of the new version before it becomes production"
    )


def deploy_when_gate_passed() -> dg.AutomationCondition:
    """Eager on every dep (a new index, a new evaluation, a new model), but never past a failed
    blocking deploy gate: `eager()` alone would not look at the check across runs."""
    return (
        dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("deploy when the gate passed")


def _candidate(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> tuple[ModelKind, str]:
    """The version to deploy: the `approved` alias, which must agree with the latest evaluation
    report's gate when the instance knows one (an alias left from an older approval never
    deploys past a newer failed gate)."""
    author = context.partition_key
    approved = registry.approved_version(artifacts, author)
    report_version = upstream_data_version(context, EVALUATION_REPORT)
    report = load_report(artifacts, author, report_version) if report_version else None
    if report is not None:
        gate = report.gate
        if not gate.passed:
            raise dg.Failure(f"deploy gate failed for {author}: {gate.summary()}", allow_retries=False)
        if approved is None or approved[1] != gate.candidate_version:
            raise dg.Failure(
                f"the approved alias ({approved[1] if approved else 'none'}) is not the version the "
                f"latest evaluation passed ({gate.candidate_version}): re-materialize evaluation_report",
                allow_retries=False,
            )
    if approved is None:
        raise dg.Failure(
            f"no approved model version for {author}: materialize evaluation_report (its deploy gate "
            "approves a version)",
            allow_retries=False,
        )
    return approved


class ArtifactRegistry:
    """`ModelRegistry` over the training registry in the artifact store."""

    def __init__(self, artifacts: ArtifactStoreResource):
        self.artifacts = artifacts

    def is_registered(self, author: str, kind: ModelKind, version: str) -> bool:
        return registry.registered_card(self.artifacts, author, kind, version) is not None

    def production_version(self, author: str) -> tuple[ModelKind, str] | None:
        return registry.production_version(self.artifacts, author)

    def set_production(self, author: str, kind: ModelKind, version: str) -> None:
        registry.set_production(self.artifacts, author, kind, version)


def _metadata(record: DeploymentRecord, question: str) -> dict:
    meta: dict = {
        "target": record.target,
        "url": dg.MetadataValue.url(record.url) if record.url.startswith("http") else record.url,
        "model_kind": record.kind,
        "model_version": record.version,
        "index_version": record.index_version,
        "rollback_version": record.rollback_version or "none",
        "promoted": record.promoted,
        "smoke_question": question,
        "smoke_answer": dg.MetadataValue.md(record.smoke.answer[:2000]),
        "smoke_latency_ms": record.smoke.latency_ms,
        "smoke_citations": record.smoke.citations,
        "smoke_cited_links": dg.MetadataValue.json(record.smoke.cited_links),
    }
    if record.details:
        meta["details"] = dg.MetadataValue.json(record.details)
    return meta


@dg.asset(
    deps=[DPO_MODEL, EVALUATION_REPORT, EMBEDDED_CHUNKS],
    partitions_def=authors_partitions,
    group_name="deployment",
    kinds={"fastapi", "sagemaker"},
    code_version="deploy-1",
    automation_condition=deploy_when_gate_passed(),
)
def deployed_endpoint(
    context: dg.AssetExecutionContext,
    config: DeployedEndpointConfig,
    artifacts: ArtifactStoreResource,
    warehouse: WarehouseResource,
    sagemaker_endpoint: SageMakerEndpointResource,
) -> dg.MaterializeResult:
    """The author's twin, live: the approved version on the configured target, answering a RAG
    question with citations, and then the `production` alias."""
    author = context.partition_key
    kind, version = _candidate(context, artifacts)
    key_ring: KeyRing | None = None
    key_id = ""
    target: Target
    service: LocalService | None = None
    if sagemaker_endpoint.target == "sagemaker":
        deployer = sagemaker_endpoint.deployer()
        target = SageMakerTarget(
            deployer, console_url=sagemaker_endpoint.console_url(deployer.endpoint_name(author))
        )
    else:
        # a key of its own, scoped to this author, alive for this run only (never logged)
        key_ring = KeyRing(warehouse.get_store())
        raw_key, record = key_ring.create(SMOKE_KEY_NAME, authors=[author])
        key_id = record.id
        service = LocalService(sagemaker_endpoint.local_settings(), api_key=raw_key, log=context.log.info)
        target = LocalTarget(service)
    try:
        deployed = deploy_version(
            target,
            artifacts,
            ArtifactRegistry(artifacts),
            author=author,
            kind=kind,
            version=version,
            question=config.smoke_question,
            log=context.log.info,
        )
    except DeploymentFailed as exc:
        serving = registry.production_version(artifacts, author)
        raise dg.Failure(
            f"deployment of {author} {kind} {version} to {target.name} failed: {exc}. Production "
            f"is {f'{serving[0]} {serving[1]}' if serving else 'not set'} (unchanged unless said above).",
            allow_retries=False,
        ) from exc
    finally:
        if service is not None:
            service.close()
        if key_ring is not None and key_id:
            key_ring.revoke(key_id)
    return dg.MaterializeResult(
        metadata=_metadata(deployed, config.smoke_question),
        data_version=dg.DataVersion(
            sha256_text(deployed.target, deployed.version, deployed.index_version)[:32]
        ),
    )
