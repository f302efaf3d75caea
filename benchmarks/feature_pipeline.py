"""Feature pipeline throughput: clean -> chunk -> embed -> upsert vs the raw encoder alone.

Not a test. Builds a synthetic corpus of realistic shapes (long articles with headings and code,
LinkedIn-style posts with bold letters, emoji and tracking links, repositories of Python files),
runs the real incremental functions against an embedded warehouse and a local Qdrant in a temp
dir, then times `SentenceTransformer.encode` alone on the same chunk texts and batch size.

    .venv/bin/python -m benchmarks.feature_pipeline --docs 2000
"""

from __future__ import annotations

import argparse
import random
import resource
import socket
import tempfile
import time
from pathlib import Path

from resources.embedded_mongo import EmbeddedMongo
from resources.embedder import EmbedderResource
from resources.vector_store import QdrantResource
from resources.warehouse import WarehouseResource
from twin_assets.domain.documents import Category, Platform, RawDocument, RepoFile
from twin_assets.features import incremental

AUTHOR = "bench"
WORDS = [
    "retrieval",
    "embedding",
    "vector",
    "latency",
    "pipeline",
    "model",
    "token",
    "chunk",
    "dataset",
    "feature",
    "training",
    "inference",
    "cache",
    "index",
    "query",
    "payload",
    "shard",
    "replica",
    "schema",
    "batch",
    "stream",
    "window",
    "metric",
    "baseline",
    "drift",
    "label",
    "prompt",
    "context",
    "window",
    "throughput",
    "memory",
]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def article(rng: random.Random, i: int) -> RawDocument:
    parts = []
    for s in range(rng.randint(3, 6)):
        parts.append(f"## Section {s} of article {i}")
        for _ in range(rng.randint(2, 4)):
            parts.append(" ".join(sentence(rng) for _ in range(rng.randint(3, 8))))
        if rng.random() < 0.3:
            parts.append(f"```python\ndef step_{s}(batch):\n    return [x * {s} for x in batch]\n```")
    parts.append("5 min read")
    return RawDocument(
        author_id=AUTHOR,
        platform=Platform.MEDIUM,
        category=Category.ARTICLES,
        link=f"https://medium.com/@bench/article-{i}",
        title=f"Article {i}",
        content="\n\n".join(parts),
    )


def post(rng: random.Random, i: int) -> RawDocument:
    lines = [f"𝗟𝗲𝘀𝘀𝗼𝗻 {i} 🚀"] + [sentence(rng) for _ in range(rng.randint(2, 6))]
    lines += ["✅ " + sentence(rng) for _ in range(3)]
    lines += [f"https://blog.example.com/p/{i}?utm_source=linkedin&fbclid=x", "hashtag#AI #MLOps"]
    return RawDocument(
        author_id=AUTHOR,
        platform=Platform.LINKEDIN,
        category=Category.POSTS,
        link=f"https://www.linkedin.com/posts/bench_{i}",
        content="\n".join(lines),
    )


def repo(rng: random.Random, i: int) -> RawDocument:
    files = []
    for f in range(rng.randint(2, 5)):
        funcs = []
        for k in range(rng.randint(3, 8)):
            body = "\n".join(
                f"    {rng.choice(WORDS)}_{j} = compute({rng.choice(WORDS)!r}, {j})"
                for j in range(rng.randint(3, 12))
            )
            funcs.append(
                f'def {rng.choice(WORDS)}_{k}(data):\n    """{sentence(rng)}"""\n{body}\n    return data\n'
            )
        files.append(
            RepoFile(
                path=f"pkg/module_{f}.py", content="import os\n\n\n" + "\n\n".join(funcs), language="python"
            )
        )
    return RawDocument(
        author_id=AUTHOR,
        platform=Platform.GITHUB,
        category=Category.REPOSITORIES,
        link=f"https://github.com/bench/repo-{i}",
        title=f"repo-{i}",
        content=f"# repo-{i}\n\n{sentence(rng)}",
        files=files,
    )


def build_corpus(n: int, seed: int = 7) -> list[RawDocument]:
    rng = random.Random(seed)
    makers = [article] * 5 + [post] * 4 + [repo]
    return [makers[i % len(makers)](rng, i) for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pipeline(store, qdrant: QdrantResource, embedder: EmbedderResource) -> dict:
    t0 = time.perf_counter()
    clean = incremental.clean_author(store, AUTHOR)
    t1 = time.perf_counter()
    chunk = incremental.chunk_author(store, AUTHOR, embedder.token_budget(), embedder.model_name)
    t2 = time.perf_counter()
    with qdrant.open() as index:
        embed = incremental.embed_author(store, index, embedder, AUTHOR)
    t3 = time.perf_counter()
    return {
        "clean_s": t1 - t0,
        "chunk_s": t2 - t1,
        "embed_s": t3 - t2,
        "total_s": t3 - t0,
        "cleaned": clean.new + clean.updated,
        "chunked_docs": chunk.new + chunk.updated,
        "embedded": embed.chunks_embedded,
        "deleted_points": embed.points_deleted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--change", type=float, default=0.01, help="fraction of documents changed for the re-run"
    )
    args = parser.parse_args()

    embedder = EmbedderResource(batch_size=args.batch_size)
    embedder.get_model()  # load outside the timings (a warm process in production)
    with tempfile.TemporaryDirectory() as tmp:
        mongo = EmbeddedMongo(data_dir=Path(tmp) / "mongo", port=free_port())
        mongo.start()
        try:
            store = WarehouseResource(uri=mongo.uri, database="bench").get_store()
            qdrant = QdrantResource(path=str(Path(tmp) / "qdrant"), collection="bench")
            docs = build_corpus(args.docs)
            store.upsert_documents(docs)

            full = run_pipeline(store, qdrant, embedder)
            texts = [c.content for c in incremental.get_chunks(store, AUTHOR)]
            t = time.perf_counter()
            embedder.get_model().encode(
                texts, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
            raw_s = time.perf_counter() - t

            rng = random.Random(1)
            changed = rng.sample(docs, max(1, int(len(docs) * args.change)))
            store.upsert_documents(
                [
                    RawDocument.model_validate(
                        {
                            **d.model_dump(),
                            "content": d.content + "\n\nEdited: " + sentence(rng),
                            "content_hash": "",
                        }
                    )
                    for d in changed
                ]
            )
            rerun = run_pipeline(store, qdrant, embedder)
            noop = run_pipeline(store, qdrant, embedder)
        finally:
            mongo.stop()

    n_chunks = len(texts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"documents: {len(docs)}  chunks: {n_chunks}  batch size: {args.batch_size}")
    print(
        f"full run: {full['total_s']:.1f} s (clean {full['clean_s']:.1f}, chunk {full['chunk_s']:.1f}, embed+upsert {full['embed_s']:.1f})"
    )
    print(f"documents/s: {len(docs) / full['total_s']:.1f}")
    print(f"chunks/s (pipeline): {n_chunks / full['total_s']:.1f}")
    print(f"chunks/s (raw encoder): {n_chunks / raw_s:.1f}  ({raw_s:.1f} s)")
    print(f"ratio pipeline/raw encoder: {raw_s / full['total_s']:.3f}  (target >= 0.85)")
    print(
        f"re-run after changing {len(changed)} documents ({args.change:.0%}): {rerun['total_s']:.2f} s, "
        f"{rerun['embedded']} chunks re-embedded, {rerun['deleted_points']} points deleted; "
        f"fraction of full run: {rerun['total_s'] / full['total_s']:.3f}  (target <= 0.05)"
    )
    print(f"no-op re-run: {noop['total_s']:.2f} s, {noop['embedded']} chunks embedded")
    print(f"peak RSS: {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
