"""Retrieval latency of the inference service at one author's scale, against Qdrant local mode.

Not a test. Builds `n_chunks` chunks of one author from the sample author's own sentences
(articles, posts, exports, the chunkwise code), recombined and spread over platforms,
categories, repositories and five years of dates, plus a second author's chunks in the same
Qdrant collection. Vectors: every distinct sentence is embedded once with the real MiniLM and a
chunk's vector is the normalised mean of its sentences' vectors (the geometry of real chunks at
a fraction of the encoding time; search cost does not depend on how vectors were made).

Measured per question, in one run:
- retrieval: query embedding (question + expansions, one batch) + filtered exact dense search
  + BM25 + fusion, i.e. the pipeline's "search" stage;
- RAG overhead before generation: self-query + expansion + search + rerank (`retrieve()` wall);
  both with expansion on (2 offline expansions, so 3 queries), and the default configuration
  (expansion off) for comparison;
- baseline: the same query embedding + one filtered local-mode Qdrant `query_points` per query
  (author + category/platform filters) on the same points (fewer questions: it is slow).

    .venv/bin/python -m benchmarks.serving_retrieval --chunks 20000 --queries 200
"""

from __future__ import annotations

import argparse
import html
import json
import os
import random
import re
import resource
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource
from resources.vector_store import QdrantResource
from twin_assets.domain.documents import Category, Platform, sha256_text
from twin_assets.domain.features import Chunk
from twin_assets.domain.stores import VectorPoint
from twin_assets.paths import PROJECT_ROOT
from twin_assets.serving.rag import RagConfig, RagPipeline
from twin_assets.serving.snapshot import build_snapshot, load_index, publish_snapshot

AUTHOR = "bench-author"
OTHER = "bench-other"
SAMPLE = PROJECT_ROOT / "twin_assets" / "sample_data"
PLATFORMS = [
    (Platform.MEDIUM, Category.ARTICLES, 0.3),
    (Platform.SUBSTACK, Category.ARTICLES, 0.2),
    (Platform.WEB, Category.ARTICLES, 0.1),
    (Platform.LINKEDIN, Category.POSTS, 0.25),
    (Platform.GITHUB, Category.REPOSITORIES, 0.15),
]
REPOS = [
    f"{a}-{b}" for a in ("chunk", "vector", "eval", "token", "pipe") for b in ("kit", "wise", "lab", "forge")
]
TEMPLATES = [
    "What do you think about {t}?",
    "How do you approach {t}?",
    "Why does {t} matter?",
    "What did you say on LinkedIn about {t}?",
    "In your articles, how do you handle {t}?",
    "What have you written about {t} since March 2024?",
    "How does the {r} repo deal with {t}?",
    "What did you write in 2023 about {t}?",
    "Explain {t} in your own words.",
    "What is your advice on {t} in the last 12 months?",
]


def _text_of_html(raw: str) -> str:
    raw = re.sub(r"(?is)<(script|style|nav|footer|header)\b.*?</\1>", " ", raw)
    return html.unescape(re.sub(r"(?s)<[^>]+>", " ", raw))


def sample_sentences() -> tuple[list[str], list[str]]:
    """(prose sentences, code lines) from the sample author's own files."""
    prose: list[str] = []
    for path in sorted((SAMPLE / "site").rglob("index.html")) + sorted((SAMPLE / "exports").rglob("*.html")):
        text = " ".join(_text_of_html(path.read_text(errors="ignore")).split())
        prose += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s.strip()) <= 400]
    for path in sorted((SAMPLE / "exports").rglob("*.csv")):
        text = " ".join(path.read_text(errors="ignore").split())
        prose += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s.strip()) <= 400]
    code: list[str] = []
    for path in sorted((SAMPLE / "repo" / "src").rglob("*.py")) + sorted(
        (SAMPLE / "repo" / "tests").rglob("*.py")
    ):
        lines = [line for line in path.read_text(errors="ignore").splitlines() if line.strip()]
        code += ["\n".join(lines[i : i + 6]) for i in range(0, len(lines), 6)]
    return sorted(set(prose)), sorted(set(code))


def make_corpus(
    n_chunks: int, embedder: EmbedderResource, seed: int = 7
) -> tuple[list[Chunk], np.ndarray, dict[str, datetime | None], list[str]]:
    rng = random.Random(seed)
    prose, code = sample_sentences()
    units = prose + code
    unit_vectors = embedder.embed(units)
    index_of = {u: i for i, u in enumerate(units)}
    chunks: list[Chunk] = []
    rows: list[np.ndarray] = []
    dates: dict[str, datetime | None] = {}
    start = datetime(2021, 1, 1, tzinfo=UTC)
    doc = 0
    while len(chunks) < n_chunks:
        platform, category, _ = rng.choices(PLATFORMS, weights=[w for *_, w in PLATFORMS])[0]
        doc_id = f"doc-{doc:05d}"
        doc += 1
        dates[doc_id] = None if rng.random() < 0.05 else start + timedelta(days=rng.randrange(5 * 365))
        repo = rng.choice(REPOS) if category == Category.REPOSITORIES else None
        title = repo or " ".join(rng.choice(prose).split()[:6])
        link = f"https://github.com/bench/{repo}" if repo else f"https://{platform}.example/{doc_id}"
        for position in range(rng.randint(3, 14)):
            pool = code if category == Category.REPOSITORIES else prose
            parts = rng.sample(pool, k=min(len(pool), rng.randint(2, 6)))
            content = ("\n" if category == Category.REPOSITORIES else " ").join(parts)
            chunks.append(
                Chunk(
                    id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{doc_id}:{position}:{sha256_text(content)}")),
                    author_id=AUTHOR,
                    document_id=doc_id,
                    category=category,
                    platform=platform,
                    link=link,
                    title=title,
                    position=position,
                    content=content,
                    token_count=len(content.split()),
                    file_path="src/module.py" if repo else None,
                    source_hash=sha256_text(doc_id),
                )
            )
            v = unit_vectors[[index_of[p] for p in parts]].mean(axis=0)
            rows.append(v / np.linalg.norm(v))
            if len(chunks) >= n_chunks:
                break
    return chunks, np.asarray(rows, dtype=np.float32), dates, prose


def make_questions(n: int, prose: list[str], seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    topics = []
    for sentence in prose:
        words = [w.strip(".,;:!?()\"'").lower() for w in sentence.split()]
        words = [w for w in words if len(w) > 4 and w.isalpha()]
        if len(words) >= 3:
            i = rng.randrange(len(words) - 1)
            topics.append(f"{words[i]} {words[i + 1]}")
    return [rng.choice(TEMPLATES).format(t=rng.choice(topics), r=rng.choice(REPOS)) for _ in range(n)]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else float("nan")


def _qdrant_baseline(
    chunks: list[Chunk], vectors: np.ndarray, pipeline: RagPipeline, index, questions: list[str], folder: Path
) -> dict[str, Any]:
    qdrant = QdrantResource(path=str(folder / "qdrant"), collection="bench")
    other = [
        c.model_copy(update={"author_id": OTHER, "id": str(uuid.uuid5(uuid.NAMESPACE_OID, c.id))})
        for c in chunks[: len(chunks) // 4]
    ]
    t0 = time.perf_counter()
    with qdrant.open() as qi:
        qi.ensure_collection(vectors.shape[1])
        for i in range(0, len(chunks), 1024):
            qi.upsert_chunks(chunks[i : i + 1024], vectors[i : i + 1024])
        for i in range(0, len(other), 1024):
            qi.upsert_chunks(other[i : i + 1024], vectors[i : min(i + 1024, len(other))])
    upsert_s = time.perf_counter() - t0
    times: list[float] = []
    with qdrant.open() as qi:
        for question in questions:
            result = pipeline.retrieve(index, question)  # the same filters and expansions
            t = time.perf_counter()
            qv = pipeline.embedder.embed(result.queries)
            for v in qv:
                qi.search(
                    v,
                    AUTHOR,
                    pipeline.config.candidates,
                    categories=[str(c) for c in result.filters.categories]
                    if result.filters.categories
                    else None,
                    platforms=[str(p) for p in result.filters.platforms]
                    if result.filters.platforms
                    else None,
                )
            times.append((time.perf_counter() - t) * 1000)
    return {
        "upsert_s": round(upsert_s, 1),
        "questions": len(times),
        "p50_ms": _pct(times, 0.5),
        "p95_ms": _pct(times, 0.95),
    }


def run(n_chunks: int = 20000, queries: int = 200, baseline_queries: int = 30) -> dict[str, Any]:
    embedder = EmbedderResource()
    embedder.embed(["warm up"])
    t0 = time.perf_counter()
    chunks, vectors, dates, prose = make_corpus(n_chunks, embedder)
    corpus_s = time.perf_counter() - t0
    points = [
        VectorPoint(id=c.id, payload=c.payload(), vector=v.tolist())
        for c, v in zip(chunks, vectors, strict=True)
    ]
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        folder = Path(tmp)
        artifacts = ArtifactStoreResource(root_dir=str(folder / "artifacts"))
        t = time.perf_counter()
        snapshot = build_snapshot(points, dates, embedder.model_name)
        version = publish_snapshot(artifacts, AUTHOR, snapshot)
        publish_s = time.perf_counter() - t
        t = time.perf_counter()
        index = load_index(artifacts, AUTHOR, version)
        load_s = time.perf_counter() - t
        questions = make_questions(queries, prose)
        # the measure is over the expanded queries: expansion on (it is off by default)
        pipeline = RagPipeline(embedder, RagConfig(expansion=True))
        load_before = os.getloadavg()[0]
        default_threads = torch.get_num_threads()
        by_threads = {}
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            by_threads[threads] = _measure(pipeline, index, questions)
        torch.set_num_threads(1)
        defaults = _measure(RagPipeline(embedder, RagConfig()), index, questions)
        baseline = _qdrant_baseline(chunks, vectors, pipeline, index, questions[:baseline_queries], folder)
        torch.set_num_threads(default_threads)
    ours = by_threads[1]
    return {
        "chunks": index.size,
        "questions": len(questions),
        "questions_with_filters": ours["questions_with_filters"],
        "queries_per_question": 1 + pipeline.config.n_expansions,
        "corpus_build_s": round(corpus_s, 1),
        "snapshot_publish_s": round(publish_s, 2),
        "index_load_s": round(load_s, 2),
        "torch_threads": 1,
        "retrieval_p50_ms": ours["retrieval_p50_ms"],
        "retrieval_p95_ms": ours["retrieval_p95_ms"],
        "rag_overhead_p50_ms": ours["rag_overhead_p50_ms"],
        "rag_overhead_p95_ms": ours["rag_overhead_p95_ms"],
        "stage_p50_ms": ours["stage_p50_ms"],
        "by_torch_threads": by_threads,
        "default_config": defaults,
        "qdrant_local_baseline": baseline,
        "speedup_vs_qdrant_p50": round(baseline["p50_ms"] / ours["retrieval_p50_ms"], 1),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": {"retrieval_p50_ms": 50, "rag_overhead_p50_ms": 500},
        "mean_chunk_chars": round(statistics.mean(len(c.content) for c in chunks)),
    }


def _measure(pipeline: RagPipeline, index, questions: list[str]) -> dict[str, Any]:
    for q in questions[:10]:  # warm caches (filter masks, BLAS, the model's kernels)
        pipeline.retrieve(index, q)
    search, overhead, stages = [], [], {k: [] for k in ("self_query", "expansion", "search", "rerank")}
    filtered = 0
    for q in questions:
        t = time.perf_counter()
        result = pipeline.retrieve(index, q)
        overhead.append((time.perf_counter() - t) * 1000)
        search.append(result.timings_ms["search"])
        for k in stages:
            stages[k].append(result.timings_ms[k])
        filtered += not result.filters.is_empty()
    return {
        "retrieval_p50_ms": _pct(search, 0.5),
        "retrieval_p95_ms": _pct(search, 0.95),
        "rag_overhead_p50_ms": _pct(overhead, 0.5),
        "rag_overhead_p95_ms": _pct(overhead, 0.95),
        "stage_p50_ms": {k: _pct(v, 0.5) for k, v in stages.items()},
        "questions_with_filters": filtered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--baseline-queries", type=int, default=30)
    args = parser.parse_args()
    result = run(args.chunks, args.queries, args.baseline_queries)
    print(json.dumps(result, indent=2, default=str))
    others = ", ".join(
        f"{n} threads: retrieval p50 {r['retrieval_p50_ms']} ms, overhead p50 {r['rag_overhead_p50_ms']} ms"
        for n, r in result["by_torch_threads"].items()
    )
    print(
        f"\n1 torch thread for query embedding (by threads: {others}; load average "
        f"{result['load_average_1m']} on {result['cpus']} CPUs)"
    )
    print(
        f"retrieval (embed + filtered search over {result['queries_per_question']} queries): "
        f"p50 {result['retrieval_p50_ms']} ms, p95 {result['retrieval_p95_ms']} ms (target p50 <= 50 ms)\n"
        f"RAG overhead before generation: p50 {result['rag_overhead_p50_ms']} ms, "
        f"p95 {result['rag_overhead_p95_ms']} ms (target p50 <= 500 ms)\n"
        f"Qdrant local mode, same embedding + filtered query_points: p50 "
        f"{result['qdrant_local_baseline']['p50_ms']} ms -> {result['speedup_vs_qdrant_p50']}x faster"
    )


if __name__ == "__main__":
    main()
