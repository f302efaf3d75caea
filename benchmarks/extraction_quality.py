"""Main-content extraction quality on real pages, side by side with trafilatura and readability.

    .venv/bin/python benchmarks/extraction_quality.py [--browser auto|never] [--out FILE.json]

Two public sets with ground truth, copied in `benchmarks/data/extraction/` (see SOURCE.md):

- **article-extraction-benchmark** (Scrapinghub/Zyte): 181 real article pages from 2019-2020
  news sites and blogs, each with a human-annotated article body. Neutral ground truth.
- **readability test pages** (Mozilla): 28 pages (the three Medium stories, every page whose
  article holds `<pre>` code, blogs and tables). Their expected text is Readability.js's own
  output, so this set favours readability-style extractors; it is reported apart.

This project's extraction is scored through its real crawler: every page is served from a
local HTTP server on 127.0.0.1 and registered as one author's link, and `crawl_author` crawls
them all (dispatcher, fetch, SSRF guard, listing detection, extraction), exactly as the
`raw_documents` asset does. A registered page that yields no document counts as "no output".
A document is scored on its body: the "# <title>" line it starts with is left out, as the
title is stored apart and no other extractor's output (nor the ground truth) holds it.
trafilatura and readability-lxml run on the same HTML in the same process.

Metrics (as in the Scrapinghub benchmark's evaluate.py): text is split into `\\w+` tokens,
4-token shingles are matched as multisets, and each page's TP/FP/FN are normalised to sum to
one, so long pages do not outweigh short ones; precision and recall are the means over pages,
F1 their harmonic mean. "code exact" counts the `<pre>` blocks of the expected article whose
text (line endings normalised, trailing spaces stripped) appears verbatim in the output.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import lxml.html

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

DATA = ROOT / "data" / "extraction"
_TOKEN = re.compile(r"\w+", re.UNICODE)
_BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "nav",
    "li",
    "ul",
    "ol",
    "pre",
    "blockquote",
    "figure",
    "figcaption",
    "table",
    "tr",
    "td",
    "th",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "br",
    "hr",
    "dt",
    "dd",
    "dl",
}


@dataclass
class Page:
    key: str
    subset: str
    html: bytes
    expected: str
    code_blocks: list[str] = field(default_factory=list)
    platform: str = "web"


# -- data --------------------------------------------------------------------------------------
def html_text(fragment: str | bytes) -> str:
    """Visible text with a line break after every block element (lxml's text_content() glues
    the last word of one paragraph to the first of the next)."""
    root = lxml.html.fromstring(fragment)
    for bad in root.xpath("//script|//style|//noscript"):
        bad.drop_tree()
    parts: list[str] = []

    def walk(el) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        if el.text:
            parts.append(el.text)
        for child in el:
            walk(child)
            if child.tail:
                parts.append(child.tail)
        if tag.lower() in _BLOCK_TAGS:
            parts.append("\n")

    walk(root)
    return "".join(parts)


def _normalise_code(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def load_pages() -> list[Page]:
    pages: list[Page] = []
    aeb = DATA / "article-extraction-benchmark"
    truth = json.loads(gzip.decompress((aeb / "ground-truth.json.gz").read_bytes()))
    for key, item in sorted(truth.items()):
        html = gzip.decompress((aeb / "html" / f"{key}.html.gz").read_bytes())
        pages.append(
            Page(
                key=key[:12],
                subset="article-extraction-benchmark",
                html=html,
                expected=item.get("articleBody", ""),
            )
        )
    for folder in sorted(p for p in (DATA / "readability-test-pages").iterdir() if p.is_dir()):
        expected_html = gzip.decompress((folder / "expected.html.gz").read_bytes()).decode()
        root = lxml.html.fromstring(expected_html)
        code = [_normalise_code(pre.text_content()) for pre in root.iter("pre")]
        pages.append(
            Page(
                key=folder.name,
                subset="readability-test-pages",
                html=gzip.decompress((folder / "source.html.gz").read_bytes()),
                expected=html_text(expected_html),
                code_blocks=[c for c in code if c],
                platform="medium" if folder.name.startswith("medium-") else "web",
            )
        )
    return pages


# -- metrics -----------------------------------------------------------------------------------
def shingles(text: str, n: int = 4) -> Counter:
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 0 if not tokens else 1)))


def tp_fp_fn(expected: str, predicted: str) -> tuple[float, float, float]:
    true, pred = shingles(expected), shingles(predicted)
    tp = fp = fn = 0.0
    for key in true.keys() | pred.keys():
        t, p = true.get(key, 0), pred.get(key, 0)
        tp += min(t, p)
        fp += max(0, p - t)
        fn += max(0, t - p)
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fp == 0 else tp / (tp + fp)


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return 0.0 if tp == fn == 0 else tp / (tp + fn)


def score(pages: list[Page], outputs: dict[str, str]) -> dict:
    counts = [tp_fp_fn(p.expected, outputs.get(p.key, "")) for p in pages]
    precisions = [_precision(*c) for c in counts if c[0] + c[1] > 0]
    recalls = [_recall(*c) for c in counts if c[0] + c[2] > 0]
    precision = statistics.mean(precisions) if precisions else 0.0
    recall = statistics.mean(recalls) if recalls else 0.0
    code_total = sum(len(p.code_blocks) for p in pages)
    code_kept = sum(
        1 for p in pages for block in p.code_blocks if block in _normalise_code(outputs.get(p.key, ""))
    )
    return {
        "pages": len(pages),
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
        "no_output": sum(1 for p in pages if not outputs.get(p.key, "").strip()),
        "code_blocks": code_total,
        "code_exact": code_kept,
    }


# -- extractors --------------------------------------------------------------------------------
def run_trafilatura(pages: list[Page]) -> dict[str, str]:
    import trafilatura

    return {
        p.key: trafilatura.extract(
            p.html,
            output_format="markdown",
            include_formatting=True,
            include_tables=True,
            include_comments=False,
        )
        or ""
        for p in pages
    }


def run_readability(pages: list[Page]) -> dict[str, str]:
    from readability import Document

    out = {}
    for p in pages:
        try:
            out[p.key] = html_text(Document(p.html).summary(html_partial=True))
        except Exception:
            out[p.key] = ""
    return out


class _PageHandler(BaseHTTPRequestHandler):
    def __init__(self, *args, pages: dict[str, bytes], **kwargs):
        self.pages = pages
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        body = self.pages.get(self.path.strip("/").split("/")[-1])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def article_body(content: str, title: str | None) -> str:
    """The document's text without the "# <title>" line the crawler writes first: the title is
    stored apart (`RawDocument.title`), and the ground truth, trafilatura and readability are
    all article bodies without the headline, so it is compared like with like."""
    head = f"# {title}\n" if title else None
    return content[len(head) :].lstrip("\n") if head and content.startswith(head) else content


def run_twin(pages: list[Page], browser_mode: str) -> tuple[dict[str, str], dict]:
    """Crawl every page through `crawl_author`, from a local server, as one author's links."""
    from twin_assets.crawling import CrawlSettings, crawl_author
    from twin_assets.domain.documents import Author, AuthorLink, Platform

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_PageHandler, pages={p.key: p.html for p in pages})
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    url_of = {p.key: f"{base}/{p.subset}/{p.key}" for p in pages}
    author = Author(
        id="benchmark",
        full_name="Benchmark",
        links=[AuthorLink(url=url_of[p.key], platform=Platform(p.platform)) for p in pages],
    )
    settings = CrawlSettings(
        allow_hosts=["127.0.0.1"], min_domain_interval_s=0.0, max_retries=0, browser_mode=browser_mode
    )  # type: ignore[arg-type]
    log = logging.getLogger("extraction-benchmark")
    started = time.monotonic()
    try:
        report = crawl_author(author, settings, log)
    finally:
        server.shutdown()
    by_link = {d.link: d for d in report.documents}
    outputs: dict[str, str] = {}
    for p in pages:
        doc = by_link.get(url_of[p.key]) or by_link.get(url_of[p.key] + "/")
        outputs[p.key] = article_body(doc.content, doc.title) if doc is not None else ""
    registered = set(url_of.values())
    stats = {
        "seconds": round(time.monotonic() - started, 1),
        "documents": len(report.documents),
        "unregistered_documents": sum(1 for d in report.documents if d.link not in registered),
        "failures": Counter(f.kind for f in report.failures),
    }
    return outputs, stats


# -- report ------------------------------------------------------------------------------------
def table(results: dict[str, dict[str, dict]]) -> str:
    lines = []
    for subset in ("article-extraction-benchmark", "readability-test-pages"):
        lines += [
            f"\n{subset}",
            "| extractor | pages | F1 | precision | recall | no output | code blocks kept exactly |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, by_subset in results.items():
            m = by_subset[subset]
            code = f"{m['code_exact']}/{m['code_blocks']}" if m["code_blocks"] else "-"
            lines.append(
                f"| {name} | {m['pages']} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} "
                f"| {m['no_output']} | {code} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--browser",
        default="auto",
        choices=["auto", "never", "always"],
        help="the crawler's browser mode (auto: as in production)",
    )
    parser.add_argument("--out", type=Path, help="write every number (and per-page F1) as JSON")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pages of each set")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    pages = load_pages()
    if args.limit:
        pages = [
            p
            for s in ("article-extraction-benchmark", "readability-test-pages")
            for p in [q for q in pages if q.subset == s][: args.limit]
        ]
    runners: dict[str, Callable[[], dict[str, str]]] = {
        "llm-twin crawler": lambda: twin_outputs,
        "trafilatura": partial(run_trafilatura, pages),
        "readability-lxml": partial(run_readability, pages),
    }
    twin_outputs, twin_stats = run_twin(pages, args.browser)
    results: dict[str, dict[str, dict]] = {}
    per_page: dict[str, dict[str, float]] = {}
    for name, run in runners.items():
        started = time.monotonic()
        outputs = run()
        elapsed = time.monotonic() - started if name != "llm-twin crawler" else twin_stats["seconds"]
        results[name] = {}
        for subset in ("article-extraction-benchmark", "readability-test-pages"):
            subset_pages = [p for p in pages if p.subset == subset]
            results[name][subset] = score(subset_pages, outputs)
        results[name]["seconds"] = round(elapsed, 1)  # type: ignore[assignment]
        for p in pages:
            counts = tp_fp_fn(p.expected, outputs.get(p.key, ""))
            prec, rec = _precision(*counts), _recall(*counts)
            per_page.setdefault(p.key, {})[name] = (
                round(2 * prec * rec / (prec + rec), 3) if prec + rec else 0.0
            )
    print(table(results))
    print(
        f"\nllm-twin crawl: {twin_stats['documents']} documents "
        f"({twin_stats['unregistered_documents']} not registered), failures by kind: "
        f"{dict(twin_stats['failures']) or 'none'}, {twin_stats['seconds']} s; "
        + ", ".join(f"{n} {results[n]['seconds']} s" for n in results if n != "llm-twin crawler")
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "results": results,
                    "crawl": {**twin_stats, "failures": dict(twin_stats["failures"])},
                    "per_page_f1": per_page,
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
