"""`evaluation_report` per author and its blocking `deploy_gate` check.

Thin asset: it resolves what to evaluate (registry cards, local model directories, the held-out
splits of the datasets each model was trained on, the author's chunks) and hands plain inputs to
`twin_assets.evaluation`. The report's version hashes those inputs and the evaluation config: a
re-run on unchanged inputs loads the stored report and computes nothing.

The gate's verdict is also written to the registry: a passing candidate gets the `approved` alias
(`models/<author>/<kind>/aliases/approved.json`), which is what a deployment must read; a failing
one never gets it.
"""

import base64

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource
from resources.llm import TextGeneratorResource
from resources.tracking import WandbResource
from resources.vector_store import QdrantResource
from resources.warehouse import WarehouseResource
from twin_assets.defs.partitions import authors_partitions
from twin_assets.defs.training.assets import retrain_on_new_data, upstream_data_version
from twin_assets.domain.features import RetrievedChunk
from twin_assets.domain.models import ModelCard, ModelKind
from twin_assets.evaluation.config import EvaluationConfig
from twin_assets.evaluation.models import BASE, ModelSpec
from twin_assets.evaluation.rag import RagJudge, RagQuestion, RagResult, Retriever
from twin_assets.evaluation.report import (
    REPORT_PNG,
    EvaluationInputs,
    EvaluationReport,
    evaluation_code_version,
    evaluation_key,
    evaluation_version,
    load_report,
    render_markdown,
    run_evaluation,
    save_report,
    table_records,
)
from twin_assets.training import registry
from twin_assets.training.base_model import PROJECT_CHAT_TEMPLATE
from twin_assets.training.chat import DEFAULT_SYSTEM_PROMPT
from twin_assets.training.data import load_rows

SFT_MODEL = dg.AssetKey("sft_model")
DPO_MODEL = dg.AssetKey("dpo_model")
EMBEDDED_CHUNKS = dg.AssetKey("embedded_chunks")
GATE = "deploy_gate"
APPROVED_ALIAS = "approved"


class EvaluationReportConfig(EvaluationConfig, dg.Config):
    """The evaluation's run config (launchpad): items, generation length, thresholds, metrics."""

    def evaluation_config(self) -> EvaluationConfig:
        return EvaluationConfig.model_validate(self.model_dump())


def _card(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource, key: dg.AssetKey, kind: ModelKind
) -> ModelCard | None:
    author = context.partition_key
    version = upstream_data_version(context, key) or artifacts.read_alias(
        registry.model_key(author, kind), "latest"
    )
    return registry.registered_card(artifacts, author, kind, version) if version else None


def _spec(artifacts: ArtifactStoreResource, card: ModelCard, name: str, label: str = "") -> ModelSpec:
    path = registry.model_dir(artifacts, card.author_id, card.kind, card.version)
    return ModelSpec(name=name, version=card.version, adapter_dir=str(path), label=label or card.label)


def _production(
    artifacts: ArtifactStoreResource, author: str, evaluated: dict[str, ModelCard]
) -> tuple[str | None, ModelCard | None]:
    """(column holding the production alias, its card when it is not already a column)."""
    for kind in ("dpo", "sft"):
        version = artifacts.read_alias(registry.model_key(author, kind), "production")  # type: ignore[arg-type]
        if not version:
            continue
        for name, card in evaluated.items():
            if card.kind == kind and card.version == version:
                return name, None
        card = registry.registered_card(artifacts, author, kind, version)  # type: ignore[arg-type]
        if card is not None:
            return "production", card
    return None, None


def _snapshot_version(artifacts: ArtifactStoreResource, author: str) -> str | None:
    """The author's published index snapshot (what the endpoint searches), if any."""
    try:
        from twin_assets.serving.snapshot import latest_index_version
    except ImportError:  # the serving package is optional until it lands
        return None
    return latest_index_version(artifacts, author)


def _serving_retriever(
    artifacts: ArtifactStoreResource,
    author: str,
    version: str,
    embedder: EmbedderResource,
    llm: TextGeneratorResource,
) -> Retriever:
    """The endpoint's RAG pipeline (self-query, expansion, hybrid search, rerank; the LLM when
    configured, as the service uses it) over the published snapshot `version`."""
    from twin_assets.serving.rag import RagConfig, RagPipeline
    from twin_assets.serving.snapshot import load_index

    pipeline = RagPipeline(embedder, RagConfig(), llm=llm.get_generator() if llm.uses_llm else None)
    return pipeline.as_retriever(load_index(artifacts, author, version))


def _rag_judge(llm: TextGeneratorResource) -> tuple[RagJudge | None, str]:
    """ragas' LLM metrics need an OpenAI-compatible server: the project's LLM resource, handed
    down as plain values (the evaluation package never sees a resource)."""
    if llm.backend == "openai" and llm.base_url and llm.model:
        judge = RagJudge(
            base_url=llm.base_url,
            model=llm.model,
            api_key=llm.api_key,  # pyright: ignore[reportArgumentType] (pydantic coerces to SecretStr)
            timeout_s=llm.timeout_s,
            max_retries=llm.max_retries,
            concurrency=llm.max_concurrency,
        )
        return judge, ""
    if llm.backend == "openai":
        return None, "the LLM resource has no base_url or model (TWIN_LLM_BASE_URL, TWIN_LLM_MODEL)"
    if llm.uses_llm:
        return None, f"the {llm.backend!r} LLM backend is not an OpenAI-compatible server ragas can call"
    return None, ""


def _rag_number(value: float | None, rag: RagResult) -> float | str:
    """A float only when ragas measured it; otherwise why not (never a made-up number)."""
    return value if value is not None else rag.judge_note()


def _metadata(report: EvaluationReport, artifacts: ArtifactStoreResource, evaluated: bool) -> dict:
    key = evaluation_key(report.author, report.version)
    png_path = artifacts.local_path(f"{key}/{REPORT_PNG}")
    plot = ""
    if png_path.exists():
        plot = f"![evaluation](data:image/png;base64,{base64.b64encode(png_path.read_bytes()).decode()})"
    records = table_records(report)
    meta: dict = {
        "report_version": report.version,
        "evaluated": evaluated,  # False: unchanged inputs, the stored report was reused
        "gate": report.gate.summary(),
        "gate_passed": report.gate.passed,
        "report": dg.MetadataValue.md(render_markdown(report)),
        "table": dg.MetadataValue.table(records=[dg.TableRecord(r) for r in records]),
        "numbers": dg.MetadataValue.json(report.rows),
        "judge": dg.MetadataValue.json(report.judge.model_dump(mode="json")),
        "rag": dg.MetadataValue.json(report.rag.model_dump(mode="json")),
        "rag_faithfulness": _rag_number(report.rag.faithfulness, report.rag),
        "rag_answer_relevancy": _rag_number(report.rag.answer_relevancy, report.rag),
        "seconds": dg.MetadataValue.json(report.seconds),
        "report_uri": dg.MetadataValue.url(artifacts.uri(key))
        if artifacts.uses_s3
        else dg.MetadataValue.path(str(artifacts.local_path(key))),
    }
    if plot:
        meta["plot"] = dg.MetadataValue.md(plot)
    return meta


def _track(wandb: WandbResource, report: EvaluationReport) -> dict[str, str]:
    """Every number of the report in a W&B run (offline by default): summary keys
    `<model>/<metric>`, the gate's verdict, and the model table."""
    with wandb.start_run(
        name=f"eval-{report.author}-{report.version}",
        group=report.author,
        job_type="evaluation",
        config={"evaluation": report.config, "models": report.models, "data": report.data_versions},
        tags=["evaluation"],
    ) as run:
        summary: dict = {"gate/passed": report.gate.passed, "gate/summary": report.gate.summary()}
        for column, row in report.rows.items():
            for metric, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    summary[f"{column}/{metric}"] = value
        run.log_summary(summary)
        if run.run is not None:
            import wandb as wandb_sdk

            records = table_records(report)
            columns = list(records[0]) if records else ["metric"]
            table = wandb_sdk.Table(
                columns=columns,  # pyright: ignore[reportArgumentType] (str column names)
                data=[list(r.values()) for r in records],
            )
            run.run.log({"models": table})
        return run.as_metadata()


def _gate_result(report: EvaluationReport) -> dg.AssetCheckResult:
    gate = report.gate
    meta: dict = {"candidate": gate.candidate, "candidate_version": gate.candidate_version}
    for f in gate.failures:
        meta[f"{f.metric}_vs_{f.against}"] = f.describe()
    if gate.notes:
        meta["notes"] = dg.MetadataValue.json(gate.notes)
    return dg.AssetCheckResult(
        check_name=GATE,
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=gate.summary(),
        metadata=meta,
    )


@dg.asset(
    deps=[
        SFT_MODEL,
        DPO_MODEL,
        dg.AssetKey("instruction_dataset"),
        dg.AssetKey("preference_dataset"),
        EMBEDDED_CHUNKS,
    ],
    partitions_def=authors_partitions,
    group_name="evaluation",
    kinds={"pytorch"},
    code_version=evaluation_code_version(),
    automation_condition=retrain_on_new_data(ignore=[EMBEDDED_CHUNKS]),
    check_specs=[
        dg.AssetCheckSpec(
            GATE,
            asset="evaluation_report",
            blocking=True,
            description="The candidate (DPO, else SFT) beats the base model's held-out NLL by the "
            "configured margin and does not regress against production beyond the tolerances.",
        )
    ],
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: EvaluationReportConfig,
    artifacts: ArtifactStoreResource,
    llm: TextGeneratorResource,
    embedder: EmbedderResource,
    warehouse: WarehouseResource,
    qdrant: QdrantResource,
    wandb: WandbResource,
) -> dg.MaterializeResult:
    """Base, SFT, DPO and production side by side on the author's held-out writing, and the gate."""
    author = context.partition_key
    cfg = config.evaluation_config()
    sft = _card(context, artifacts, SFT_MODEL, "sft")
    if sft is None:
        raise dg.Failure(
            f"no registered SFT model for author {author}: materialize sft_model first", allow_retries=False
        )
    dpo = _card(context, artifacts, DPO_MODEL, "dpo")
    if dpo is not None and dpo.parent_model.get("version") not in (None, sft.version):
        context.log.warning(
            f"DPO {dpo.version} was trained from SFT {dpo.parent_model.get('version')}, "
            f"not from the evaluated SFT {sft.version}"
        )
    base_info = sft.lineage.get("base_model", {})
    base_dir = str(base_info.get("resolved") or sft.base_model)
    evaluated = {"sft": sft, **({"dpo": dpo} if dpo is not None else {})}
    production, production_card = _production(artifacts, author, evaluated)
    specs = [ModelSpec(name=BASE, version=str(base_info.get("fingerprint") or base_dir)[:16], label=base_dir)]
    specs += [_spec(artifacts, card, name) for name, card in evaluated.items()]
    if production_card is not None:
        specs.append(
            _spec(
                artifacts,
                production_card,
                "production",
                f"production = {production_card.kind} {production_card.version}",
            )
        )

    # the held-out splits of the very dataset versions the models were trained on
    inst_train, inst_test, _ = load_rows(artifacts, author, "instruction", sft.dataset_version)
    pref_test: list[dict] = []
    if dpo is not None:
        _, pref_test, _ = load_rows(artifacts, author, "preference", dpo.dataset_version)
    chunks_version = upstream_data_version(context, EMBEDDED_CHUNKS) or ""
    judge = llm.get_generator() if cfg.runs("judge") and llm.uses_llm else None
    rag_judge, rag_judge_note = _rag_judge(llm) if cfg.runs("rag") else (None, "")
    inputs = EvaluationInputs(
        author=author,
        base_dir=base_dir,
        models=specs,
        production=production,
        instruction_test=inst_test,
        preference_test=pref_test,
        author_corpus=[r["output"] for r in inst_train],
        system_prompt=str(sft.hyperparameters.get("system_prompt") or DEFAULT_SYSTEM_PROMPT),
        chat_template=PROJECT_CHAT_TEMPLATE,
        data_versions={
            "instruction": sft.dataset_version,
            "preference": dpo.dataset_version if dpo else "",
            "embedded_chunks": chunks_version,
        },
    )
    snapshot = _snapshot_version(artifacts, author) if cfg.runs("rag") and chunks_version else None
    extra = {
        "judge": judge.name if judge is not None else "",
        "index_snapshot": snapshot or "",
        "rag_judge": rag_judge.name if rag_judge is not None else "",
        "embedder": embedder.model_name,
    }
    version = evaluation_version(inputs, cfg, extra)
    report = load_report(artifacts, author, version)
    evaluated_now = report is None
    if report is None:
        rag_questions: list[RagQuestion] = []
        chunks: list = []
        retriever: Retriever | None = None
        retriever_name = ""
        if cfg.runs("rag") and chunks_version:
            chunks = warehouse.get_store().find_chunks(author)
            rag_questions = [
                RagQuestion(question=r["instruction"], source_document_id=r["source_document_id"])
                for r in sorted(inst_test, key=lambda r: r["id"])[: cfg.max_items]
            ]

            unusable = ""
            if snapshot:
                try:
                    retriever = _serving_retriever(artifacts, author, snapshot, embedder, llm)
                    retriever_name = f"the serving RAG pipeline over index snapshot {snapshot}"
                except (LookupError, ValueError) as exc:  # missing/inconsistent snapshot files
                    unusable = f"index snapshot {snapshot} is unusable ({exc})"
                    context.log.warning(unusable)
            if retriever is None:

                def retrieve(query: str, k: int) -> list[RetrievedChunk]:
                    return qdrant.retrieve(query, author, k, embedder=embedder)

                retriever = retrieve
                why = unusable or "no index snapshot is published for this author"
                retriever_name = (
                    f"plain Qdrant top-k dense retrieval ({qdrant.collection}): {why}, so the "
                    "endpoint's pipeline could not be measured"
                )

        report = run_evaluation(
            inputs,
            cfg,
            version=version,
            judge=judge,
            embedder=embedder,
            rag_questions=rag_questions,
            rag_chunks=chunks,
            retriever=retriever,
            retriever_name=retriever_name,
            rag_judge=rag_judge,
            log=context.log.info,
        )
        if not chunks_version and cfg.runs("rag"):
            report.rag.reason = "embedded_chunks is not materialized for this author"
        if rag_judge_note and not report.rag.judge_configured:
            report.rag.judge_reason = rag_judge_note
        save_report(artifacts, report)
        tracking = _track(wandb, report)
        context.log.info(f"evaluation logged to W&B ({tracking.get('mode', 'disabled')})")
    else:
        context.log.info(f"evaluation {version} already stored for unchanged inputs: nothing evaluated")
    gate = report.gate
    if gate.passed and gate.candidate:
        artifacts.write_alias(
            registry.model_key(author, "dpo" if gate.candidate == "dpo" else "sft"),
            APPROVED_ALIAS,
            gate.candidate_version,
        )
    context.log.info(f"deploy gate: {gate.summary()}")
    return dg.MaterializeResult(
        metadata=_metadata(report, artifacts, evaluated_now),
        data_version=dg.DataVersion(version),
        check_results=[_gate_result(report)],
    )
