"""Serving benchmark: retrieval and generation figures (from their own benchmarks) and a soak
test of a real `twin serve` process.

    python -m benchmarks.serving                      # sample author, 16 clients, 300 s
    python -m benchmarks.serving --tiny --duration 30 # tiny models (seconds to set up)
    python -m benchmarks.serving --skip-retrieval --skip-generation

Soak: N concurrent clients (default 16) post `/v1/twins/<author>/answer` to a `twin serve`
process on 127.0.0.1 for D seconds; reported: errors (target 0), requests per second, p50/p95
latency, and the server's RSS at start, middle and end (flat memory: no growth per request).
The sample author is served from the configured data dir (TWIN_DATA_DIR, after the pipeline
ran); `--tiny` builds two tiny authors in a temp dir instead. Auth is off for the soak (keys
are covered by the tests; this measures the serving path).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "What do you do when a queue backs up?",
    "How do you think about latency budgets?",
    "What is your lesson about caching?",
    "How should retries be handled?",
]


def _run_part(module: str) -> Any:
    """`benchmarks.<module>.run()` if that benchmark exists; its figures, or why not."""
    try:
        mod = importlib.import_module(f"benchmarks.{module}")
    except ImportError as exc:
        return f"not available ({exc})"
    run = getattr(mod, "run", None)
    if run is None:
        return "no run() in the module"
    return run()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _soak(
    url: str, authors: list[str], clients: int, duration: float, pid: int, max_tokens: int
) -> dict:
    import httpx
    import psutil

    proc = psutil.Process(pid)
    rss: list[tuple[float, int]] = []
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.monotonic()
    deadline = started + duration

    async def client(i: int) -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            n = 0
            while time.monotonic() < deadline:
                author = authors[(i + n) % len(authors)]
                body = {"question": QUESTIONS[(i + n) % len(QUESTIONS)], "max_tokens": max_tokens}
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"{url}/v1/twins/{author}/answer", json=body)
                    if r.status_code == 200:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                except Exception as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                n += 1

    async def sample_memory() -> None:
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - started, proc.memory_info().rss))
            await asyncio.sleep(1.0)
        rss.append((time.monotonic() - started, proc.memory_info().rss))

    await asyncio.gather(sample_memory(), *(client(i) for i in range(clients)))
    elapsed = time.monotonic() - started
    mid = min(rss, key=lambda p: abs(p[0] - elapsed / 2))[1] if rss else 0
    return {
        "clients": clients,
        "duration_s": round(elapsed, 1),
        "requests_ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "throughput_rps": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(_percentile(latencies, 0.5) * 1000, 1),
        "p95_ms": round(_percentile(latencies, 0.95) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else float("nan"),
        "rss_start_mb": round(rss[0][1] / 2**20, 1) if rss else 0,
        "rss_mid_mb": round(mid / 2**20, 1),
        "rss_end_mb": round(rss[-1][1] / 2**20, 1) if rss else 0,
    }


def _tiny_env(root: Path) -> tuple[dict[str, str], list[str]]:
    """Two tiny authors (tiny Llama + LoRA adapters + MiniLM-embedded snapshots) under `root`."""
    from twin_assets_tests.serving_api_fixtures import ALICE, BOB, build_world

    world = build_world(root)
    env = {
        "TWIN_DATA_DIR": str(root / "data"),
        "TWIN_ARTIFACT_DIR": str(world.artifacts.root_dir),
        "TWIN_SERVE_BASE_MODEL": str(world.base),
        "TWIN_SERVE_AUTHORS": f"{ALICE},{BOB}",
    }
    return env, [ALICE, BOB]


def soak(args: argparse.Namespace) -> dict:
    from twin_assets import server

    with tempfile.TemporaryDirectory(prefix="twin-soak-") as tmp:
        if args.tiny:
            env, authors = _tiny_env(Path(tmp))
        else:
            env, authors = {}, [a for a in (args.author or "").split(",") if a]
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        os.environ.update(
            {
                "TWIN_SERVE_AUTH": "false",
                "TWIN_SERVE_PORT": str(args.port),
                "TWIN_SERVE_RATE_PER_MINUTE": "0",
                "TWIN_SERVE_MAX_TOKENS": str(max(args.max_tokens, 16)),
                "TWIN_SERVE_PROMPT_LOG_SAMPLE": os.environ.get("TWIN_SERVE_PROMPT_LOG_SAMPLE", "0"),
            }
        )
        try:
            settings = server.settings_from_env()
            if not authors:
                authors = list(settings.authors or [])
            pid = server.start(settings, timeout_s=600)
            try:
                if not authors:
                    import httpx

                    authors = httpx.get(f"{settings.base_url}/readyz", timeout=10).json()["authors"]
                return {
                    "authors": ",".join(authors),
                    **asyncio.run(
                        _soak(settings.base_url, authors, args.clients, args.duration, pid, args.max_tokens)
                    ),
                }
            finally:
                server.stop()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _table(title: str, figures: Any) -> str:
    if not isinstance(figures, dict):
        return f"## {title}\n\n{figures}\n"
    rows = "\n".join(f"| {k} | {v} |" for k, v in figures.items())
    return f"## {title}\n\n| figure | value |\n|---|---:|\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=300.0, help="soak seconds (default 300)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--port", type=int, default=8018)
    p.add_argument("--tiny", action="store_true", help="two tiny authors instead of the sample author")
    p.add_argument("--author", default="", help="authors to ask (comma-separated; default: all served)")
    p.add_argument("--skip-retrieval", action="store_true")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--skip-soak", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = []
    if not args.skip_retrieval:
        out.append(_table("Retrieval (benchmarks.serving_retrieval)", _run_part("serving_retrieval")))
    if not args.skip_generation:
        out.append(_table("Generation (benchmarks.serving_generation)", _run_part("serving_generation")))
    failed = False
    if not args.skip_soak:
        figures = soak(args)
        failed = figures["errors"] > 0
        out.append(_table(f"Soak: {args.clients} clients for {args.duration:g}s", figures))
    print("\n".join(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
