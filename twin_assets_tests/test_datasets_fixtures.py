"""A realistic cleaned corpus for one author (articles with headings, LinkedIn-style posts, a
repository of Python), in one voice, with the traps the curation funnel must catch: an exact
duplicate, a near-duplicate repost, boilerplate, a code-only section and a post in Polish.
Shared by the dataset tests (imported, holds no tests of its own)."""

from __future__ import annotations

from twin_assets.domain.documents import Category, Platform, RepoFile, document_id, sha256_text
from twin_assets.domain.features import CleanedDocument

AUTHOR = "jan-data"


def cleaned(
    link: str,
    category: Category,
    platform: Platform,
    title: str | None,
    content: str,
    files: list[RepoFile] | None = None,
    language: str = "en",
) -> CleanedDocument:
    files = files or []
    return CleanedDocument(
        id=document_id(AUTHOR, link),
        author_id=AUTHOR,
        platform=platform,
        category=category,
        link=link,
        title=title,
        content=content,
        files=files,
        language=language,
        raw_content_hash=sha256_text("raw", content),
        content_hash=sha256_text(content, *(f.content for f in files)),
        cleaner_version="test",
    )


ARTICLE_1 = """# Why your feature pipeline should not know about your model

Most teams I work with start the same way. One notebook pulls data, cleans it, trains a model and writes predictions, and for a few weeks that is fine. Then a second model needs the same features, somebody copies the cleaning code, and from that day on the two copies drift apart quietly.

I have watched this happen in three companies now. The fix is not a better notebook. The fix is to split the system along the lines where the data changes hands.

## Feature, training, inference

The pattern I keep coming back to is the FTI split: a feature pipeline, a training pipeline and an inference pipeline. Each one owns a single job and talks to the others only through storage. Features land in a feature store, models land in a model registry, and nothing reaches into another pipeline's memory.

What I like about it is how boring it makes the hard parts. You can rerun the feature pipeline without touching training. You can retrain on last month's snapshot because the snapshot is versioned. You can roll back a model because the registry knows which data it saw.

## The interface is the data

The contract between pipelines is not a function call, it is a table with a schema and a version. When I review a design, the first question I ask is what the feature pipeline writes and who reads it. If nobody can answer that in one sentence, the pipelines are still a monolith wearing three hats.

Versioning matters more than people expect. A training run that cannot tell you which dataset version it used is a training run you cannot reproduce, and a model you cannot reproduce is a model you cannot debug when it misbehaves in production.

## Where teams get it wrong

The most common mistake I see is letting the training code compute its own features at the last minute. It feels faster, because there is one less hop, but it means the inference service must replicate that logic exactly, and it never does. Training-serving skew is almost always a pipeline boundary that was skipped.

The second mistake is treating the feature store as a cache instead of a product. It needs owners, tests and documentation like any other service, otherwise nobody trusts what is in it and everybody goes back to their own notebook.
"""

ARTICLE_2 = """# Lessons from fine-tuning a small model on my own writing

Last month I fine-tuned a small language model on everything I have published: posts, articles and a few repositories. I wanted to know whether a model with a few hundred million parameters can pick up how somebody writes, not just what they write about.

## Start with the data, not the model

I spent two evenings on the training loop and two weeks on the dataset. That ratio felt wrong at first, but it was the right call. The model learns whatever the data says, including the cookie banners, the duplicated paragraphs and the half-finished drafts I forgot to delete.

Cleaning was mostly about removing things that were not mine: navigation text, quoted comments, boilerplate footers. De-duplication mattered more than I expected, because I reuse my own phrasing a lot across posts, and near-duplicates quietly teach the model to repeat itself.

## Instructions written backwards

The trick that made the biggest difference was writing the instructions backwards. Instead of asking a big model to write answers, I kept my own paragraphs as the answers and generated the question each paragraph answers. The answers stay in my voice because they are my words, and the model only has to learn the mapping from request to style.

It also makes evaluation honest. If the answers were generated, the fine-tuned model would be graded on imitating another model. With back-translation, the held-out answers are real text I wrote, so a good score means the model actually sounds like me.

## What I would do differently

I would hold out the evaluation split before doing anything else and check every training row against it. Twice I found a paragraph in the test set that also appeared, slightly edited, in a training post. Without an n-gram overlap check, those leaks inflate the scores and you only find out when the model disappoints in real use.

I would also track every dataset version from day one. Being able to say that model seven was trained on dataset version three, and that version three came from these exact documents, saved me hours when the quality dropped after a re-crawl.
"""

ARTICLE_3 = """# Choosing a vector database for a retrieval system

Every retrieval project eventually reaches the question of where the vectors live. I have tried the managed services, the extensions for databases we already run, and the dedicated engines, and the answer depends less on benchmarks than on how your team operates.

## Filtering is the feature that matters

The demos always show pure similarity search, but real queries almost never look like that. They ask for the closest chunks written by this author, in this category, after this date. If the engine cannot combine a payload filter with the vector search efficiently, you end up over-fetching and filtering in Python, and latency grows with every customer you add.

Before choosing, I write down the five filters our product will need and test exactly those. Most engines handle one filter well. Fewer handle three at once without falling back to a full scan.

## Keep the embeddings reproducible

An index is only as trustworthy as the process that built it. I store the embedding model name and version with every point, and I never mix vectors from two models in one collection. When the model changes, the collection is rebuilt from the cleaned documents, which is cheap if the cleaning snapshot is versioned and painful if it is not.

This is also why I like keeping the chunking logic next to the embedding step rather than in the crawler. Chunk boundaries are a modelling decision, and they will change as you learn what your queries look like.

## Operations decide in the end

The engine your team can back up, monitor and upgrade at three in the morning beats the one that wins a benchmark by ten percent. I would rather run a slightly slower system we understand than a faster one nobody on call has touched.
"""

ARTICLE_CODE_ONLY = """# Snippets for the pipeline post

## Setup

```python
import dagster as dg
from pathlib import Path
defs = dg.Definitions(assets=[raw, cleaned])
x = load(Path("data"))
y = clean(x)
z = embed(y)
```
"""

POSTS = [
    """Hot take: most ML projects do not fail because of the model. They fail because nobody can tell you which data the model was trained on.

I have debugged three production incidents this year. All three came down to a dataset that changed without anyone noticing. No version, no lineage, no way to roll back.

Version your data like you version your code. It is boring, and it saves weeks.""",
    """I fine-tuned a small model on my own posts last month. The surprising part was not the training, it was how much time went into the dataset.

Two evenings on the training loop. Two weeks on cleaning, de-duplication and splitting. If you are starting a fine-tuning project, budget for the data first.

The model is only ever as good as the examples you give it, and my raw archive was full of duplicates and half-finished drafts.""",
    """A question I ask in every design review: what does this pipeline write, and who reads it?

If the answer takes more than one sentence, the boundaries are wrong. Pipelines should talk through storage with a schema and a version, not through shared notebooks and good intentions.

It sounds strict, but it is what lets three teams move at their own pace without breaking each other every Friday.""",
    """Retrieval demos always show a clean similarity search. Real products never do.

Real queries say: the closest chunks by this author, in this category, from the last six months. Test your vector database with the filters your product actually needs, not with the benchmark everyone quotes.

I learned this the hard way when our latency doubled after we added the second customer.""",
    """Small models are underrated for personal tools. A model with a few hundred million parameters runs on a laptop, fine-tunes overnight and can learn a surprising amount of somebody's style.

You will not get deep reasoning out of it. You will get a drafting partner that sounds like you, runs offline and costs nothing per token, which for a writing co-pilot is exactly the trade I want.""",
]

# a repost of POSTS[0] with small edits: a near-duplicate
NEAR_DUP_POST = """Hot take: most ML projects do not fail because of the model. They fail because nobody can tell you which data the model was trained on.

I have debugged three production incidents this year. All three came down to a dataset that changed without anyone noticing. No version, no lineage, and no way to roll back.

Version your data like you version your code. It is boring, but it saves weeks."""

BOILERPLATE_POST = """Thanks for reading! Subscribe to my newsletter for more posts like this.
Follow me for more content about data engineering and machine learning.
Like and share if you found this useful, and click here to read more.
All rights reserved. Copyright 2024 Jan Data. Privacy policy and terms of service apply.
#mlops #dataengineering #machinelearning #ai"""

POLISH_POST = """Większość projektów uczenia maszynowego nie upada z powodu modelu. Upadają, ponieważ nikt nie potrafi powiedzieć, na jakich danych model był trenowany.

W tym roku debugowałem trzy incydenty produkcyjne i wszystkie sprowadzały się do zbioru danych, który zmienił się bez niczyjej wiedzy. Wersjonujcie dane tak samo jak kod, to nudne, ale oszczędza tygodnie pracy."""

REPO_FILES = [
    RepoFile(
        path="README.md",
        language="markdown",
        content="""# pipeline-kit

## Why this exists

I kept rewriting the same three helpers in every data project: a content hash that ignores formatting, a deterministic train/test split and a small retry wrapper for flaky APIs. This repository collects them in one place, with tests, so I can stop copying them between notebooks.

Everything here is deliberately small and dependency-free. If a helper needs a framework to be useful, it belongs in a different package.
""",
    ),
    RepoFile(
        path="pipeline_kit/hashing.py",
        language="python",
        content='''import hashlib
import re

_WS = re.compile(r"\\s+")


def normalise(text: str) -> str:
    """Fold case and whitespace so that formatting changes do not count as new content."""
    return _WS.sub(" ", text.lower()).strip()


def content_hash(text: str) -> str:
    """Return a stable hash of the normalised text, used to detect unchanged documents."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def split_bucket(item_id: str, seed: int = 0, buckets: int = 100) -> int:
    """Return the bucket of an item for a deterministic split that survives re-runs."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode("utf-8")).hexdigest()
    return int(digest, 16) % buckets
''',
    ),
    RepoFile(
        path="pipeline_kit/retry.py",
        language="python",
        content='''import random
import time


class RetryError(Exception):
    """Raised when every attempt failed; keeps the last exception as the cause."""


def retry(call, attempts: int = 5, base: float = 0.5, cap: float = 20.0, retry_on=(Exception,)):
    """Call `call` until it succeeds, sleeping with exponential backoff and jitter between tries."""
    last = None
    for attempt in range(attempts):
        try:
            return call()
        except retry_on as exc:
            last = exc
            delay = min(cap, base * 2 ** attempt) * (0.5 + random.random() / 2)
            time.sleep(delay)
    raise RetryError(f"gave up after {attempts} attempts") from last
''',
    ),
]


def corpus() -> list[CleanedDocument]:
    docs = [
        cleaned(
            "https://medium.com/@jan/feature-pipelines",
            Category.ARTICLES,
            Platform.MEDIUM,
            "Why your feature pipeline should not know about your model",
            ARTICLE_1,
        ),
        cleaned(
            "https://jan.substack.com/p/fine-tuning-small",
            Category.ARTICLES,
            Platform.SUBSTACK,
            "Lessons from fine-tuning a small model on my own writing",
            ARTICLE_2,
        ),
        cleaned(
            "https://jan.dev/vector-databases",
            Category.ARTICLES,
            Platform.WEB,
            "Choosing a vector database for a retrieval system",
            ARTICLE_3,
        ),
        cleaned(
            "https://jan.dev/snippets",
            Category.ARTICLES,
            Platform.WEB,
            "Snippets for the pipeline post",
            ARTICLE_CODE_ONLY,
        ),
        # the same article mirrored on another site: exact duplicates of every extract
        cleaned(
            "https://jan.dev/mirror/feature-pipelines",
            Category.ARTICLES,
            Platform.WEB,
            "Why your feature pipeline should not know about your model",
            ARTICLE_1,
        ),
        cleaned(
            "https://github.com/jan/pipeline-kit",
            Category.REPOSITORIES,
            Platform.GITHUB,
            "pipeline-kit",
            "pipeline-kit: small helpers for data pipelines",
            REPO_FILES,
        ),
    ]
    for i, post in enumerate(POSTS):
        docs.append(
            cleaned(f"https://www.linkedin.com/posts/jan_{i}", Category.POSTS, Platform.LINKEDIN, None, post)
        )
    docs.append(
        cleaned(
            "https://www.linkedin.com/posts/jan_repost",
            Category.POSTS,
            Platform.LINKEDIN,
            None,
            NEAR_DUP_POST,
        )
    )
    docs.append(
        cleaned(
            "https://www.linkedin.com/posts/jan_cta",
            Category.POSTS,
            Platform.LINKEDIN,
            None,
            BOILERPLATE_POST,
        )
    )
    docs.append(
        cleaned(
            "https://www.linkedin.com/posts/jan_pl",
            Category.POSTS,
            Platform.LINKEDIN,
            None,
            POLISH_POST,
            language="pl",
        )
    )
    return docs
