"""Generation throughput: `clients` concurrent clients through the dynamic batcher
(`LocalGenerator`) vs sequential `model.generate` of the same model on the same prompts.

    python benchmarks/serving_generation.py                  # SmolLM2-135M, 16 clients, CPU
    python benchmarks/serving_generation.py --max-tokens 32 --prompts 8 --clients 8

Both sides load the project base model (SmolLM2-135M-Instruct, `ensure_base_model()`) with the
same two LoRA adapters (random, small non-zero weights: the compute of a real adapter), and
generate greedily the same prompts, assigned round-robin to adapter A, adapter B and the base
model. The sequential side is one `generate` per prompt with batch size 1 and the KV cache (the
naive server); the batched side is `clients` asyncio clients submitting concurrently. Throughput
is generated tokens / wall seconds on each side (greedy on both, so the same tokens); latency is
per request, from submit to result (for the sequential side also with the wait behind earlier
requests, as `clients` clients arriving together would see it). Both are measured in the same run, in the same process, one
after the other. Issue 12 targets a ratio >= 3 at 16 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTIONS = [
    "How do you decide when to add a cache?",
    "What did you learn from your last production incident?",
    "Explain backpressure to a new engineer.",
    "Why do retries make latency worse?",
    "How do you measure a queue before tuning it?",
    "What is your opinion on microservices?",
    "Write a short post about code review habits.",
    "How should a team write runbooks?",
    "What makes a good dashboard?",
    "Summarise your view on technical debt.",
    "How do you choose a database for a new project?",
    "Describe a good on-call rotation.",
    "What is the hardest bug you have fixed?",
    "How do you write a design document?",
    "Give three tips for faster CI pipelines.",
    "Why do you prefer small pull requests?",
]


def _make_adapter(base_dir: Path, target: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    config = LoraConfig(
        r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.01)  # a nudge, like a trained adapter, not noise that drowns the base
    peft_model.save_pretrained(str(target))
    return target


def _messages(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are the author's writing twin: answer in the author's voice."},
        {"role": "user", "content": question},
    ]


def _sequential(
    base_dir: Path, adapters: dict[str, Path], jobs: list[tuple[str | None, str]], max_tokens: int
) -> dict:
    """The naive server: one request at a time, `generate` with batch size 1 and the KV cache."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32).eval()
    names = list(adapters)
    model = PeftModel.from_pretrained(base, str(adapters[names[0]]), adapter_name="a0")
    for i, name in enumerate(names[1:], start=1):
        model.load_adapter(str(adapters[name]), adapter_name=f"a{i}")
    model.eval()
    peft_names = {name: f"a{i}" for i, name in enumerate(names)}
    # the same prompt text and stop tokens as LocalGenerator uses
    if not tokenizer.chat_template:
        from twin_assets.training.base_model import PROJECT_CHAT_TEMPLATE

        tokenizer.chat_template = PROJECT_CHAT_TEMPLATE
    eos = [tokenizer.eos_token_id]
    if "<|im_end|>" in tokenizer.get_vocab():
        eos.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    latencies: list[float] = []
    tokens = 0
    started = time.perf_counter()
    for adapter, question in jobs:
        t0 = time.perf_counter()
        prompt = tokenizer.apply_chat_template(
            _messages(question), tokenize=False, add_generation_prompt=True
        )
        ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=sorted(set(eos)),
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0],
                adapter_names=[peft_names[adapter] if adapter else "__base__"],
            )
        generated = out[0, ids.shape[1] :].tolist()
        while generated and generated[-1] in eos:  # count like the generator: the end-of-turn token once
            generated.pop()
            tokens += 1
        tokens += len(generated)
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    return {"tokens": tokens, "wall_s": wall, "latencies": latencies}


def _batched(
    base_dir: Path,
    adapters: dict[str, Path],
    jobs: list[tuple[str | None, str]],
    max_tokens: int,
    clients: int,
) -> dict:
    from twin_assets.serving.engine import LocalGenerator
    from twin_assets.serving.types import GenerationParams

    generator = LocalGenerator(base_dir, max_batch_size=max(1, clients))
    try:
        for name, path in adapters.items():
            generator.load_adapter(name, path)
        params = GenerationParams(max_tokens=max_tokens)
        pending = list(jobs)
        latencies: list[float] = []
        tokens = 0
        errors = 0

        async def client() -> None:
            nonlocal tokens, errors
            while pending:
                adapter, question = pending.pop(0)
                t0 = time.perf_counter()
                out = await generator.submit(adapter, _messages(question), params).result()
                latencies.append(time.perf_counter() - t0)
                tokens += out.completion_tokens
                errors += out.finish_reason in ("error", "timeout")

        async def main() -> None:
            await asyncio.gather(*(client() for _ in range(clients)))

        started = time.perf_counter()
        asyncio.run(main())
        wall = time.perf_counter() - started
        stats = generator.stats()
        return {
            "tokens": tokens,
            "wall_s": wall,
            "latencies": latencies,
            "errors": errors,
            "batch_sizes": stats.batch_sizes,
        }
    finally:
        generator.close()


def run(
    base_dir: str | None = None,
    clients: int = 16,
    prompts: int = 16,
    max_tokens: int = 64,
    *,
    threads: int | None = 1,
) -> dict:
    """`threads`: torch intra-op threads for both sides (None: torch's default). One by default:
    on a 2-core machine shared with other work, torch's spinning OpenMP threads collapse (a
    SmolLM2 decode step went from ~0.09 s with 1 thread to seconds with 2 under load)."""
    import torch

    from twin_assets.training.base_model import ensure_base_model

    if threads is not None:
        torch.set_num_threads(threads)

    base = Path(base_dir) if base_dir else ensure_base_model()
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        adapters = {
            "alice@bench": _make_adapter(base, Path(tmp) / "alice", 1),
            "bob@bench": _make_adapter(base, Path(tmp) / "bob", 2),
        }
        cycle: list[str | None] = ["alice@bench", "bob@bench", None]
        jobs = [(cycle[i % 3], QUESTIONS[i % len(QUESTIONS)]) for i in range(prompts)]
        batched = _batched(base, adapters, jobs, max_tokens, clients)
        sequential = _sequential(base, adapters, jobs, max_tokens)
    seq_tps = sequential["tokens"] / sequential["wall_s"]
    bat_tps = batched["tokens"] / batched["wall_s"]
    return {
        "model": base.name,
        "clients": clients,
        "prompts": prompts,
        "max_tokens": max_tokens,
        "torch_threads": torch.get_num_threads(),
        "sequential_tokens": sequential["tokens"],
        "sequential_s": round(sequential["wall_s"], 2),
        "sequential_tokens_per_s": round(seq_tps, 2),
        "sequential_p50_latency_s": round(statistics.median(sequential["latencies"]), 3),
        # the same 16 clients arriving together at a one-at-a-time server wait for those ahead
        "sequential_p50_latency_queued_s": round(
            statistics.median(list(itertools.accumulate(sequential["latencies"]))), 3
        ),
        "batched_tokens": batched["tokens"],
        "batched_s": round(batched["wall_s"], 2),
        "batched_tokens_per_s": round(bat_tps, 2),
        "batched_p50_latency_s": round(statistics.median(batched["latencies"]), 3),
        "batched_errors": batched["errors"],
        "batch_sizes": batched["batch_sizes"],
        "throughput_ratio": round(bat_tps / seq_tps, 2),
        "target_ratio": 3.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-dir", default=None, help="model directory (default: SmolLM2-135M export)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    result = run(
        args.base_dir,
        clients=args.clients,
        prompts=args.prompts,
        max_tokens=args.max_tokens,
        threads=args.threads or None,
    )
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
