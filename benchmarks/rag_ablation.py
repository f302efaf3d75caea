"""RAG ablation on the sample author: what each retrieval stage earns.

Not a test. Needs the README's main command to have run (the sample author's chunks embedded
in `.data/qdrant`, the instruction dataset in `.data/artifacts`, the warehouse in `.data/mongo`).
Reads copies of the Qdrant and warehouse folders (nothing the pipeline holds is opened), builds
the author's index snapshot exactly as `embedded_chunks` publishes it, and scores the service's
`RagPipeline` with `twin_assets.evaluation.rag.evaluate_retrieval` (hit rate@k, MRR, ragas'
non-LLM context precision/recall) for each configuration:

    dense only -> + hybrid (BM25 + RRF) -> + hybrid rerank -> + expansion -> + self-query = full

The questions are the instruction dataset's (train and test: retrieval never trained on them);
a question's relevant chunks are those of the document it was written from. They name the
article or section they are about ("my article \"Embedding Drift Is Real\""), which makes them
easy for lexical search, so a second table scores the same questions with every quoted title
removed ("without titles"): closer to what a reader asks.

    .venv/bin/python -m benchmarks.rag_ablation [--k 5] [--data .data]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from resources.artifacts import ArtifactStoreResource
from resources.embedded_mongo import EmbeddedMongo
from resources.embedder import EmbedderResource
from resources.vector_store import QdrantResource
from resources.warehouse import WarehouseResource
from twin_assets.domain.features import Chunk
from twin_assets.evaluation.rag import RagQuestion, RagResult, evaluate_retrieval
from twin_assets.paths import PROJECT_ROOT
from twin_assets.serving.rag import RagConfig, RagPipeline
from twin_assets.serving.snapshot import build_snapshot, snapshot_index
from twin_assets.training.data import load_rows

AUTHOR = "maya-kowalski"

CONFIGS: list[tuple[str, RagConfig]] = [
    ("dense only", RagConfig(self_query=False, expansion=False, hybrid=False, rerank="none")),
    ("+ hybrid (BM25, RRF fusion)", RagConfig(self_query=False, expansion=False, hybrid=True, rerank="none")),
    ("+ hybrid rerank", RagConfig(self_query=False, expansion=False, hybrid=True, rerank="hybrid")),
    ("+ self-query (the defaults)", RagConfig(self_query=True, expansion=False)),
    ("+ expansion (full)", RagConfig(self_query=True, expansion=True)),
    ("full without hybrid", RagConfig(expansion=True, hybrid=False)),
    ("full without rerank", RagConfig(expansion=True, rerank="none")),
    ("full without self-query", RagConfig(self_query=False, expansion=True)),
    ("dense + expansion", RagConfig(self_query=False, expansion=True, hybrid=False, rerank="none")),
]
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_author(data: Path, work: Path) -> tuple[list, dict, list[Chunk]]:
    """(points with vectors, published dates by document id, chunks) from copies of `data`."""
    if not (data / "qdrant").exists():
        raise SystemExit(f"no Qdrant data under {data}: run the README's main command first")
    shutil.copytree(data / "qdrant", work / "qdrant")
    qdrant = QdrantResource(path=str(work / "qdrant"))
    with qdrant.open() as index:
        points = list(index.scroll(AUTHOR, with_vectors=True))
    if not points:
        raise SystemExit(f"no embedded chunks of {AUTHOR} in {data / 'qdrant'}")
    dates: dict = {}
    if (data / "mongo" / "db").exists():
        shutil.copytree(data / "mongo" / "db", work / "mongo" / "db")
        server = EmbeddedMongo(data_dir=work / "mongo", port=_free_port())
        server.start()
        try:
            store = WarehouseResource(uri=server.uri).get_store()
            dates = {d.id: d.published_at for d in store.get_documents(AUTHOR)}
        finally:
            server.stop()
    chunks = [Chunk.model_validate({**p.payload, "id": p.payload["chunk_id"]}) for p in points]
    return points, dates, chunks


def questions_of(artifacts: ArtifactStoreResource) -> tuple[list[RagQuestion], list[RagQuestion]]:
    version = artifacts.read_alias(f"datasets/{AUTHOR}/instruction", "latest")
    if version is None:
        raise SystemExit(f"no instruction dataset for {AUTHOR}: run the README's main command first")
    train, test, _ = load_rows(artifacts, AUTHOR, "instruction", version)

    def qs(rows: list[dict]) -> list[RagQuestion]:
        return [
            RagQuestion(question=r["instruction"], source_document_id=r["source_document_id"]) for r in rows
        ]

    return qs(train), qs(test)


def _score(
    questions: list[RagQuestion], test: list[RagQuestion], chunks: list[Chunk], index, embedder, k: int
) -> list[dict[str, Any]]:
    rows = []
    for name, config in CONFIGS:
        pipeline = RagPipeline(embedder, config)
        retrieve = pipeline.as_retriever(index)
        spent: list[float] = []

        def timed(question: str, n: int, retrieve=retrieve, spent=spent) -> list:
            started = time.perf_counter()
            try:
                return retrieve(question, n)
            finally:
                spent.append((time.perf_counter() - started) * 1000)

        result: RagResult = evaluate_retrieval(questions, chunks, timed, k=k)
        held_out = evaluate_retrieval(test, chunks, retrieve, k=k) if test else None
        rows.append(
            {
                "config": name,
                "hit_rate": result.hit_rate,
                "mrr": result.mrr,
                "context_precision": result.context_precision,
                "context_recall": result.context_recall,
                "test_hit_rate": held_out.hit_rate if held_out else None,
                "test_mrr": held_out.mrr if held_out else None,
                "retrieval_ms_p50": round(sorted(spent)[len(spent) // 2], 1) if spent else None,
                "errors": result.errors,
            }
        )
    return rows


def _untitled(questions: list[RagQuestion]) -> list[RagQuestion]:
    return [
        q.model_copy(update={"question": " ".join(_QUOTED.sub("", q.question).split())}) for q in questions
    ]


def run(k: int = 5, data: Path | None = None) -> dict[str, Any]:
    data = data or PROJECT_ROOT / ".data"
    embedder = EmbedderResource()
    artifacts = ArtifactStoreResource(root_dir=str(data / "artifacts"))
    train, test = questions_of(artifacts)
    with tempfile.TemporaryDirectory(prefix="rag-ablation-") as tmp:
        points, dates, chunks = load_author(data, Path(tmp))
    index = snapshot_index(build_snapshot(points, dates, embedder.model_name))
    return {
        "author": AUTHOR,
        "chunks": index.size,
        "documents": len({c.document_id for c in chunks}),
        "questions": len(train) + len(test),
        "test_questions": len(test),
        "dates_known": sum(1 for v in dates.values() if v is not None),
        "k": k,
        "tables": {
            "as written": _score(train + test, test, chunks, index, embedder, k),
            "without titles": _score(_untitled(train + test), _untitled(test), chunks, index, embedder, k),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    def f(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    k = result["k"]
    lines = [
        f"RAG ablation, {result['author']}: {result['questions']} questions ({result['test_questions']} "
        f"held out), {result['chunks']} chunks of {result['documents']} documents, k={k}",
    ]
    for title, rows in result["tables"].items():
        lines += [
            "",
            f"Questions {title}:",
            "",
            f"| configuration | hit rate@{k} | MRR | context precision | context recall | "
            f"hit rate@{k} / MRR (test) | retrieval p50 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['config']} | {f(r['hit_rate'])} | {f(r['mrr'])} | {f(r['context_precision'])} | "
                f"{f(r['context_recall'])} | {f(r['test_hit_rate'])} / {f(r['test_mrr'])} | "
                f"{r['retrieval_ms_p50']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--data", type=Path, default=None, help="the data dir (default: <project>/.data)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run(args.k, args.data)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    print(markdown(result))


if __name__ == "__main__":
    main()
