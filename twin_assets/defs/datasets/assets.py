"""`instruction_dataset` and `preference_dataset`: per-author, versioned fine-tuning datasets.

Thin assets over `twin_assets.datasets`: read the author's cleaned documents, run the funnel,
store the version in the artifact store, report metadata and blocking checks.

When they re-materialise (`ON_CLEANED_DATA_CHANGE`): when the author's partition is new, or when
`cleaned_documents`' *data version* for that author changed since the last tick - not on every
upstream run (the cleaning stage keeps its data version when the cleaned content is unchanged).
Two more guards keep a no-op from producing a new version even when a run does happen:
1. an input fingerprint (cleaned-content hashes + parameters + generator + code version) equal to
   the latest version's one reuses that version without generating anything (no LLM tokens spent,
   and an LLM's non-determinism cannot mint a new version for unchanged data);
2. the version is the hash of the rows; an existing version is never rewritten, and the Dagster
   data version is that hash, so downstream training sees "unchanged".
"""

import hashlib
import json
from collections.abc import Callable

import dagster as dg
from pydantic import Field

from resources.artifacts import ArtifactStoreResource
from resources.llm import TextGeneratorResource
from resources.warehouse import WarehouseResource
from twin_assets.datasets import storage
from twin_assets.datasets.checks import (
    CheckOutcome,
    check_leakage,
    check_min_size,
    check_no_empty_fields,
)
from twin_assets.datasets.curation import FilterParams
from twin_assets.datasets.extracts import ExtractParams
from twin_assets.datasets.instruction import (
    BuiltDataset,
    CurationParams,
    Funnel,
    build_instruction_rows,
)
from twin_assets.datasets.isolation import EveryDocumentFailed, load_cleaned
from twin_assets.datasets.preference import (
    PreferenceParams,
    RejectedSource,
    build_preference_rows,
    resolve_rejected_source,
)
from twin_assets.datasets.reporting import (
    category_counts,
    funnel_markdown,
    length_markdown,
    preview_markdown,
)
from twin_assets.datasets.splitting import SplitParams
from twin_assets.defs.partitions import authors_partitions
from twin_assets.domain.datasets import DatasetCard, DatasetKind
from twin_assets.domain.features import DocumentFailure, failure_table
from twin_assets.domain.generation import GenerationUsage

CODE_VERSION = "datasets-3"  # 2: split by source document; 3: one document assignment for both
CLEANED_DOCUMENTS = dg.AssetKey("cleaned_documents")

ON_CLEANED_DATA_CHANGE = (
    (
        dg.AutomationCondition.newly_missing()
        | dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed())
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("new author or cleaned data version changed")

CHECK_LEAKAGE = "no_train_test_leakage"
CHECK_EMPTY = "no_empty_fields"
CHECK_MIN_SIZE = "minimum_training_size"
CHECK_FAILED = "no_failed_documents"


_SPLIT = SplitParams()  # one set of split defaults for both assets


class DatasetConfig(dg.Config):
    """Funnel parameters, overridable in the launchpad. `test_fraction` and `seed` decide which
    cleaned documents are held out, before the funnel; both datasets of an author hold out the
    same documents only while these two are equal in both assets' configs (the defaults are
    shared, and each version's metadata says whether it matches the other dataset)."""

    min_chars: int = Field(default=200, description="Shortest extract/answer kept (chars).")
    max_chars: int = Field(default=2000, description="Longest extract (chars); cuts on paragraphs/sentences.")
    min_words: int = Field(default=30, description="Fewest words in a prose answer.")
    languages: list[str] = Field(default=["en"], description="Allowed languages (empty: any).")
    near_dup_threshold: float = Field(default=0.7, description="MinHash Jaccard threshold.")
    test_fraction: float = Field(
        default=_SPLIT.test_fraction,
        description="Held-out share of each category's words, as whole documents. Keep equal "
        "in instruction_dataset and preference_dataset: they then hold out the same documents.",
    )
    decontamination_ngram: int = Field(default=8, description="n of the word n-gram overlap test.")
    quality_threshold: float = Field(default=0.45, description="Minimum quality score (0..1).")
    use_llm_judge: bool = Field(default=True, description="Judge quality with the LLM when configured.")
    max_rows: int = Field(default=0, description="Cap on generated rows (LLM cost); 0 = none.")
    min_train_rows: int = Field(default=20, description="Minimum training rows (blocking check).")
    seed: int = Field(
        default=_SPLIT.seed,
        description="Seed of the split and offline templates "
        "(keep equal in both dataset assets, like test_fraction).",
    )
    push_to_hub: bool = Field(
        default=True, description="Push to the HF Hub when HF_TOKEN and TWIN_HF_REPO are set."
    )

    def curation(self) -> dict:
        return dict(
            extract=ExtractParams(min_chars=self.min_chars, max_chars=self.max_chars),
            filters=FilterParams(
                min_chars=self.min_chars,
                max_chars=self.max_chars * 2,
                min_words=self.min_words,
                languages=self.languages,
            ),
            near_dup_threshold=self.near_dup_threshold,
            split=SplitParams(test_fraction=self.test_fraction, seed=self.seed),
            decontamination_ngram=self.decontamination_ngram,
            quality_threshold=self.quality_threshold,
            use_llm_judge=self.use_llm_judge,
            max_rows=self.max_rows,
            seed=self.seed,
        )


class PreferenceDatasetConfig(DatasetConfig):
    rejected_source: RejectedSource = Field(
        default="auto",
        description="Who writes 'rejected': auto | llm | base_model | offline-generic.",
    )
    max_rejected_overlap: float = Field(default=0.3, description="Max share of rejected 5-grams in chosen.")


def input_fingerprint(kind: DatasetKind, source_hashes: list[str], params: dict, generator: str) -> str:
    payload = json.dumps(
        {
            "kind": kind,
            "sources": sorted(source_hashes),
            "params": params,
            "generator": generator,
            "code": CODE_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_results(
    kind: DatasetKind,
    author_id: str,
    card: DatasetCard,
    artifacts: ArtifactStoreResource,
    min_train_rows: int,
    ngram: int,
) -> list[dg.AssetCheckResult]:
    train = storage.load_split(artifacts, author_id, kind, card.version, "train")
    test = storage.load_split(artifacts, author_id, kind, card.version, "test")
    outcomes: dict[str, CheckOutcome] = {
        CHECK_LEAKAGE: check_leakage(kind, train, test, ngram),
        CHECK_EMPTY: check_no_empty_fields(train + test),
        CHECK_MIN_SIZE: check_min_size(author_id, kind, len(train), min_train_rows, card.funnel),
    }
    return [
        dg.AssetCheckResult(
            check_name=name,
            passed=o.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=o.description,
            metadata={**o.metadata, "description": o.description, "version": card.version},
        )
        for name, o in outcomes.items()
    ]


def _failed_check(failures: list[DocumentFailure]) -> dg.AssetCheckResult:
    """Warns (never blocks) when documents or extracts were skipped because they raised."""
    return dg.AssetCheckResult(
        check_name=CHECK_FAILED,
        passed=not failures,
        severity=dg.AssetCheckSeverity.WARN,
        description="no document failed"
        if not failures
        else f"{len({f.document_id for f in failures})} document(s) skipped in part or whole "
        f"({len(failures)} failure(s)); the others are in the dataset, the skipped ones are "
        "retried by the next run",
        metadata={
            "failed_documents": len({f.document_id for f in failures}),
            "failures": dg.MetadataValue.md(failure_table(failures)),
            "document_ids": sorted({f.document_id for f in failures})[:50],
        },
    )


def _load(warehouse: WarehouseResource, author_id: str) -> tuple[list, list[DocumentFailure]]:
    """The author's cleaned documents and the ones that could not be loaded (malformed); fails
    the step when none could be."""
    failures: list[DocumentFailure] = []
    docs = load_cleaned(warehouse.get_store(), author_id, failures)
    if failures and not docs:
        raise dg.Failure(
            description=f"none of the {len(failures)} cleaned documents of {author_id} could be loaded; "
            f"first: {failures[0].document_id}: {failures[0].reason}",
            metadata={"failures": dg.MetadataValue.md(failure_table(failures))},
        )
    return docs, failures


def _publish(
    context: dg.AssetExecutionContext,
    kind: DatasetKind,
    config: DatasetConfig,
    artifacts: ArtifactStoreResource,
    author_id: str,
    fingerprint: str,
    build: Callable[[], tuple[BuiltDataset, list[tuple[str, GenerationUsage]]]],
    params: dict,
    load_failures: list[DocumentFailure] | None = None,
) -> dg.MaterializeResult:
    """Build (or reuse) and store one version. A version built while documents failed is never
    reused as 'inputs unchanged': the next run builds again, so a fixed document gets in."""
    failures = list(load_failures or [])
    previous = storage.load_card(artifacts, author_id, kind)
    reused = (
        previous is not None
        and previous.parameters.get("input_fingerprint") == fingerprint
        and not failures
        and not storage.load_failures(artifacts, author_id, kind)
    )
    usages: list[tuple[str, GenerationUsage]] = []
    built: BuiltDataset | None = None
    if reused:
        assert previous is not None
        card = previous
        context.log.info(f"{kind} inputs unchanged (fingerprint {fingerprint}): reusing {card.version}")
        written = False
    else:
        try:
            built, usages = build()
        except EveryDocumentFailed as exc:
            storage.save_failures(artifacts, author_id, kind, failures + exc.failures)
            raise dg.Failure(
                description=f"{kind} dataset: {exc}",
                metadata={"failures": dg.MetadataValue.md(failure_table(failures + exc.failures))},
            ) from exc
        failures += built.failures
        for f in failures:
            context.log.warning(f"{kind}: skipped {f.link or f.document_id} at {f.stage}: {f.reason}")
        splits = {"train": built.train, "test": built.test}
        version = storage.dataset_version(kind, splits)
        card = DatasetCard(
            author_id=author_id,
            kind=kind,
            version=version,
            funnel=built.funnel.stages,
            generator=built.generator,
            parameters={
                **params,
                "input_fingerprint": fingerprint,
                "quality_scorer": built.scorer,
                "dropped": built.funnel.dropped,
                "code_version": CODE_VERSION,
                **({"failed_documents": [f.model_dump(mode="json") for f in failures]} if failures else {}),
            },
            source_hashes=built.source_hashes,
        )
        saved = storage.save_dataset(artifacts, card, splits, assignment=built.split)
        card, written = saved.card, saved.written
        storage.save_failures(artifacts, author_id, kind, failures)
        if written and config.push_to_hub:
            repo = storage.push_to_hub(
                kind, splits, card, token=artifacts.hf_token, repo_id=artifacts.hf_repo
            )
            if repo:
                context.log.info(f"pushed {kind} {version} to the Hub ({repo})")
    train = storage.load_split(artifacts, author_id, kind, card.version, "train")
    fields = ["instruction", "output"] if kind == "instruction" else ["prompt", "chosen", "rejected"]
    funnel = built.funnel if built else Funnel(stages=card.funnel, dropped=card.parameters.get("dropped", {}))
    metadata: dict = {
        "version": card.version,
        "uri": dg.MetadataValue.url(card.uri) if card.uri.startswith(("s3://", "http")) else card.uri,
        "written": written,
        "reused_inputs_unchanged": reused,
        "counts": card.counts,
        "train_categories": category_counts(train),
        "funnel": dg.MetadataValue.md(funnel_markdown(funnel)),
        "preview": dg.MetadataValue.md(preview_markdown(train, ["category", *fields])),
        "lengths": dg.MetadataValue.md(length_markdown(train, fields)),
        "generator": card.generator,
        "source_documents": len(card.source_hashes),
        "documents_per_split": card.documents or {},
        "categories_without_test": card.split.categories_without_test if card.split else {},
        **_split_agreement(context, kind, author_id, card, artifacts),
        "dagster/row_count": card.counts.get("train", 0) + card.counts.get("test", 0),
        "failed": len({f.document_id for f in failures}),
    }
    if failures:
        metadata["failed_documents"] = dg.MetadataValue.md(failure_table(failures))
    for prefix, usage in usages:
        if usage.backend != "offline":
            metadata.update(usage.as_metadata(prefix))
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=dg.DataVersion(card.version),
        check_results=[
            *_check_results(
                kind, author_id, card, artifacts, config.min_train_rows, config.decontamination_ngram
            ),
            _failed_check(failures),
        ],
    )


def _split_agreement(
    context: dg.AssetExecutionContext,
    kind: DatasetKind,
    author_id: str,
    card: DatasetCard,
    artifacts: ArtifactStoreResource,
) -> dict:
    """Whether this version's split parameters match the other dataset's latest version: only
    then do both hold out the same documents (a document evaluated as unseen must not be a DPO
    training document). A mismatch is a configuration error, logged loudly."""
    other_kind: DatasetKind = "preference" if kind == "instruction" else "instruction"
    assignment = card.split.assignment if card.split else None
    out: dict = {"split_assignment": assignment.fingerprint if assignment else ""}
    other = storage.load_card(artifacts, author_id, other_kind)
    if other is None:
        return out
    match = other.parameters.get("split") == card.parameters.get("split")
    out[f"split_params_match_{other_kind}"] = match
    if not match:
        context.log.warning(
            f"{kind} split parameters {card.parameters.get('split')} differ from the latest "
            f"{other_kind} dataset's {other.parameters.get('split')}: the two may hold out "
            "different documents; set test_fraction and seed equal in both assets' configs"
        )
    return out


def _check_specs(key: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CHECK_LEAKAGE,
            asset=key,
            blocking=True,
            description="No source document, row id, answer or answer n-gram is in both train and test.",
        ),
        dg.AssetCheckSpec(
            CHECK_EMPTY, asset=key, blocking=True, description="No row has an empty text field."
        ),
        dg.AssetCheckSpec(
            CHECK_MIN_SIZE,
            asset=key,
            blocking=True,
            description="Enough training rows to fine-tune (min_train_rows).",
        ),
        dg.AssetCheckSpec(
            CHECK_FAILED,
            asset=key,
            blocking=False,
            description="No document or extract failed (raised) in this build. A failing one is "
            "skipped with its reason, the others are kept; it only warns.",
        ),
    ]


@dg.asset(
    group_name="datasets",
    partitions_def=authors_partitions,
    deps=[CLEANED_DOCUMENTS],
    code_version=CODE_VERSION,
    automation_condition=ON_CLEANED_DATA_CHANGE,
    check_specs=_check_specs("instruction_dataset"),
    kinds={"huggingface", "parquet"},
)
def instruction_dataset(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    warehouse: WarehouseResource,
    artifacts: ArtifactStoreResource,
    llm: TextGeneratorResource,
) -> dg.MaterializeResult:
    """Instruction back-translation: (instruction, the author's own extract) pairs, curated."""
    author_id = context.partition_key
    docs, load_failures = _load(warehouse, author_id)
    params = CurationParams(**config.curation())
    generator = llm.get_generator()
    fingerprint = input_fingerprint(
        "instruction", [d.content_hash for d in docs], params.model_dump(mode="json"), generator.name
    )

    def build():
        built = build_instruction_rows(docs, generator, params)
        return built, [("llm", generator.usage)]

    return _publish(
        context,
        "instruction",
        config,
        artifacts,
        author_id,
        fingerprint,
        build,
        params.model_dump(mode="json"),
        load_failures,
    )


@dg.asset(
    group_name="datasets",
    partitions_def=authors_partitions,
    deps=[CLEANED_DOCUMENTS, dg.AssetKey("base_model")],  # its rejected answers come from the base model
    code_version=CODE_VERSION,
    automation_condition=ON_CLEANED_DATA_CHANGE,
    check_specs=_check_specs("preference_dataset"),
    kinds={"huggingface", "parquet"},
)
def preference_dataset(
    context: dg.AssetExecutionContext,
    config: PreferenceDatasetConfig,
    warehouse: WarehouseResource,
    artifacts: ArtifactStoreResource,
    llm: TextGeneratorResource,
) -> dg.MaterializeResult:
    """(prompt, chosen = the author's text, rejected = a generic answer) pairs for DPO."""
    author_id = context.partition_key
    docs, load_failures = _load(warehouse, author_id)
    params = PreferenceParams(
        **config.curation(),
        rejected_source=config.rejected_source,
        max_rejected_overlap=config.max_rejected_overlap,
    )
    # separate generators for prompts and rejected answers: each meters its own usage
    source, rejected_gen = resolve_rejected_source(
        config.rejected_source, llm.get_generator(), llm.get_base_model_generator(), llm.base_model
    )
    prompt_gen = llm.get_generator()
    generator_name = f"prompts={prompt_gen.name}; rejected={source}" + (
        f":{rejected_gen.name}" if rejected_gen else ""
    )
    fingerprint = input_fingerprint(
        "preference", [d.content_hash for d in docs], params.model_dump(mode="json"), generator_name
    )

    def build():
        built = build_preference_rows(docs, prompt_gen, source, rejected_gen, params)
        usages = [("llm_prompts", prompt_gen.usage)]
        if rejected_gen is not None:
            usages.append(("llm_rejected", rejected_gen.usage))
        return built, usages

    return _publish(
        context,
        "preference",
        config,
        artifacts,
        author_id,
        fingerprint,
        build,
        {**params.model_dump(mode="json"), "rejected_source_resolved": source},
        load_failures,
    )
