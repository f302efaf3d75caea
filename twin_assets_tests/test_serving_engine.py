"""The in-process generator: per-row adapters and parameters in one batch, streaming, cancel,
timeout, hot swap, failures, on a tiny random Llama with random (non-zero) LoRA adapters."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from twin_assets.serving.engine import GenerationStream, LocalGenerator
from twin_assets.serving.sampling import RowText
from twin_assets.serving.types import GenerationOutput, GenerationParams

CORPUS = [
    f"Post {i}: when a queue backs up, I measure before I tune. Lesson {i}: latency hides in retries."
    for i in range(24)
]


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a twin."}, {"role": "user", "content": text}]


def _random_adapter(base: Path, target: Path, seed: int, *, nan: bool = False) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    config = LoraConfig(
        r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    if nan:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.fill_(float("nan"))
    peft_model.save_pretrained(str(target))
    return target


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Two cores shared by parallel test runs: torch's intra-op threads spin against each
    other under that load (a 50-token generate of the tiny model goes from 0.1 s to 4 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from twin_assets.training.base_model import build_tiny_llama

    root = tmp_path_factory.mktemp("serving-engine")
    base = build_tiny_llama(root / "tiny", CORPUS)
    return {
        "base": base,
        "alice": _random_adapter(base, root / "alice", 1),
        "bob": _random_adapter(base, root / "bob", 2),
        "alice2": _random_adapter(base, root / "alice2", 3),
        "broken": _random_adapter(base, root / "broken", 4, nan=True),
    }


@pytest.fixture(scope="module")
def gen(models):
    generator = LocalGenerator(models["base"], max_batch_size=16, batch_wait_ms=20)
    generator.load_adapter("alice@1.0", models["alice"])
    generator.load_adapter("bob@1", models["bob"])
    yield generator
    generator.close()


async def _collect(handle: GenerationStream) -> tuple[list[str], GenerationOutput]:
    deltas = [delta async for delta in handle]
    return deltas, await handle.result()


def _solo(gen: LocalGenerator, adapter: str | None, text: str, **params) -> GenerationStream:
    """One request alone (use a generator with a short batch wait: it waits for company)."""
    handle = gen.submit(adapter, _messages(text), GenerationParams(**params))
    handle.wait(60)
    assert handle.batch_size == 1
    return handle


def test_batched_mixed_adapters_equal_one_at_a_time(models, gen):
    prompts = [
        ("alice@1.0", "Post 1: when a queue"),
        ("bob@1", "Lesson 7, I measure before I tune and"),
        (None, "hello"),
        ("alice@1.0", "I measure before I tune"),
        ("bob@1", "queue"),
    ]
    generator = LocalGenerator(models["base"], max_batch_size=len(prompts), batch_wait_ms=5000)
    try:
        generator.load_adapter("alice@1.0", models["alice"])
        generator.load_adapter("bob@1", models["bob"])
        params = GenerationParams(max_tokens=24)
        batched = [generator.submit(a, _messages(p), params) for a, p in prompts]
        for handle in batched:
            assert handle.wait(60).finish_reason == "length"
        assert {h.batch_size for h in batched} == {len(prompts)}
        singles = [_solo(gen, a, p, max_tokens=24) for a, p in prompts]  # same weights, alone
        for b, s in zip(batched, singles, strict=True):
            assert len(b.token_ids) == 24
            assert b.token_ids == s.token_ids
        # the adapters really change the output (random, non-zero LoRA weights)
        same_prompt = [_solo(gen, a, "queue", max_tokens=12).token_ids for a in ("alice@1.0", "bob@1", None)]
        assert len({tuple(ids) for ids in same_prompt}) == 3
    finally:
        generator.close()


def test_concurrent_submits_are_batched_and_stream(gen):
    before = gen.stats()

    async def main():
        handles = [
            gen.submit(a, _messages(f"Post {i}"), GenerationParams(max_tokens=16))
            for i, a in enumerate(["alice@1.0", "bob@1", None] * 3)
        ]
        return await asyncio.gather(*(_collect(h) for h in handles))

    results = asyncio.run(main())
    for deltas, output in results:
        assert "".join(deltas) == output.text
        assert output.completion_tokens == 16
    after = gen.stats()
    new_batches = {size: n - before.batch_sizes.get(size, 0) for size, n in after.batch_sizes.items()}
    assert max(size for size, n in new_batches.items() if n > 0) > 1
    assert after.requests - before.requests == 9
    assert after.completion_tokens - before.completion_tokens == 9 * 16


def test_per_row_parameters_in_one_batch(models, gen):
    generator = LocalGenerator(models["base"], max_batch_size=4, batch_wait_ms=5000)
    try:
        generator.load_adapter("alice@1.0", models["alice"])
        generator.load_adapter("bob@1", models["bob"])
        greedy_alone = _solo(gen, "alice@1.0", "Post 3", max_tokens=20)
        reference = _solo(gen, "bob@1", "Lesson 2", max_tokens=20).text
        assert len(reference) >= 6
        stop = reference[3:6]
        cut = reference.find(stop)
        sampled_params = GenerationParams(max_tokens=20, temperature=1.3, top_p=0.9, seed=7)
        handles = [
            generator.submit("alice@1.0", _messages("Post 3"), GenerationParams(max_tokens=20)),
            generator.submit("alice@1.0", _messages("Post 3"), sampled_params),
            generator.submit(None, _messages("hello"), GenerationParams(max_tokens=3)),
            generator.submit("bob@1", _messages("Lesson 2"), GenerationParams(max_tokens=20, stop=[stop])),
        ]
        greedy, sampled, short, stopped = (h.wait(60) for h in handles)
        assert greedy.text == greedy_alone.text and greedy.finish_reason == "length"
        assert {h.batch_size for h in handles} == {4}
        assert handles[0].token_ids == greedy_alone.token_ids  # a sampled neighbour changes nothing
        assert handles[1].token_ids != greedy_alone.token_ids
        assert (short.completion_tokens, short.finish_reason) == (3, "length")
        assert stopped.finish_reason == "stop"
        assert stopped.text == reference[:cut]
        assert stop not in stopped.text
        # a seeded sampled row is reproducible
        again = _solo(gen, "alice@1.0", "Post 3", **sampled_params.model_dump())
        alone = _solo(gen, "alice@1.0", "Post 3", **sampled_params.model_dump())
        assert again.token_ids == alone.token_ids
        assert sampled.completion_tokens == 20
    finally:
        generator.close()


def test_row_text_streams_stable_utf8_and_never_emits_stop(gen):
    text = "naïve café — 日本語 🙂 done STOP here"
    ids = gen.tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split())  # byte-level pieces of multi-byte characters
    row = RowText(gen._decode)
    deltas = [row.add(i) for i in ids] + [row.finish()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)

    row = RowText(gen._decode, stop=["STOP", "zz"])
    deltas = []
    for i in ids:
        deltas.append(row.add(i))
        assert "STOP" not in "".join(deltas) and "ST" not in "".join(deltas)
        if row.stopped:
            break
    deltas.append(row.finish())
    assert row.stopped
    assert "".join(deltas) == "naïve café — 日本語 🙂 done "

    row = RowText(gen._decode, stop=["done!"])  # a partial stop string is released at the end
    deltas = [row.add(i) for i in gen.tokenizer.encode("all done", add_special_tokens=False)]
    assert "".join(deltas) == "all "
    assert "".join(deltas) + row.finish() == "all done"


def test_cancel_frees_the_row_and_the_batch_continues(models):
    generator = LocalGenerator(models["base"], max_batch_size=2, batch_wait_ms=5000)
    try:
        generator.load_adapter("alice@1.0", models["alice"])
        long_params = GenerationParams(max_tokens=600)

        async def main():
            doomed = generator.submit("alice@1.0", _messages("Post 1"), long_params)
            other = generator.submit(None, _messages("Post 2"), long_params)
            async for _delta in doomed:
                doomed.cancel()
            cancelled = await doomed.result()
            other_running = not other.done
            return cancelled, other_running, await other.result()

        cancelled, other_running, other = asyncio.run(main())
        assert cancelled.finish_reason == "cancelled"
        assert cancelled.completion_tokens < 600
        assert other_running  # the neighbour kept going after the cancelled row stopped
        assert other.finish_reason == "length" and other.completion_tokens == 600

        # cancelling a queued request resolves it at once; it never takes a slot
        blocker = generator.submit(None, _messages("x"), GenerationParams(max_tokens=400))
        blocker2 = generator.submit(None, _messages("y"), GenerationParams(max_tokens=400))
        queued = generator.submit(None, _messages("z"), GenerationParams(max_tokens=400))
        queued.cancel()
        out = queued.wait(1)
        assert (out.finish_reason, out.completion_tokens) == ("cancelled", 0)
        blocker.wait(60)
        blocker2.wait(60)
        assert queued.batch_size is None
    finally:
        generator.close()


def test_timeout_returns_the_text_so_far(gen):
    async def main():
        handle = gen.submit("bob@1", _messages("Post 9"), GenerationParams(max_tokens=900, timeout_s=0.3))
        return await _collect(handle)

    started = time.monotonic()
    deltas, output = asyncio.run(main())
    assert time.monotonic() - started < 5
    assert output.finish_reason == "timeout"
    assert 0 < output.completion_tokens < 900
    assert output.text == "".join(deltas)


def test_context_overflow_and_unknown_adapter_are_rejected_at_submit(gen):
    with pytest.raises(ValueError, match="context window of 1024"):
        gen.submit(None, _messages("queue " * 900), GenerationParams(max_tokens=200))
    with pytest.raises(ValueError, match="unknown adapter"):
        gen.submit("carol@1", _messages("hi"), GenerationParams())
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        gen.load_adapter("carol@1", Path("/nonexistent"))
    assert gen.count_tokens("queue queue") >= 2
    prompt = gen.render_prompt(_messages("hello"))
    assert prompt.endswith("<|im_start|>assistant\n") and "hello" in prompt


def test_hot_swap_while_requests_are_in_flight(models):
    generator = LocalGenerator(models["base"], max_batch_size=8, batch_wait_ms=10)
    try:
        generator.load_adapter("alice@1", models["alice"])
        generator.load_adapter("reference", models["alice2"])
        expected = _solo(generator, "reference", "Post 5", max_tokens=16).token_ids
        generator.unload_adapter("reference")
        in_flight = [
            generator.submit("alice@1", _messages(f"Post {i}"), GenerationParams(max_tokens=300))
            for i in range(3)
        ]
        while not in_flight[0].text and not in_flight[0].done:
            time.sleep(0.01)
        swapper = threading.Thread(
            target=lambda: (
                generator.load_adapter("alice@2", models["alice2"]),
                generator.unload_adapter("alice@1"),
            )
        )
        swapper.start()
        swapper.join(60)
        assert generator.adapters() == ["alice@2"]
        with pytest.raises(ValueError, match="unknown adapter"):
            generator.submit("alice@1", _messages("late"), GenerationParams())
        fresh = _solo(generator, "alice@2", "Post 5", max_tokens=16)
        for handle in in_flight:
            out = handle.wait(60)
            assert (out.finish_reason, out.completion_tokens, out.model) == ("length", 300, "alice@1")
        assert fresh.token_ids == expected
        # the replaced adapter is deleted once nothing uses it
        deadline = time.monotonic() + 10
        while len(generator._loaded) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(generator._loaded) == 1
    finally:
        generator.close()


def test_failing_batch_fails_only_its_requests(models):
    generator = LocalGenerator(models["base"], max_batch_size=2, batch_wait_ms=5000)
    try:
        generator.load_adapter("broken@1", models["broken"])
        handles = [
            generator.submit(
                "broken@1", _messages("Post 1"), GenerationParams(max_tokens=8, temperature=1.0)
            ),
            generator.submit(None, _messages("Post 2"), GenerationParams(max_tokens=8)),
        ]
        for handle in handles:
            out = handle.wait(60)
            assert out.finish_reason == "error"
            assert out.error and "non-finite" in out.error
        assert generator.stats().failed_batches == 1
        again = [
            generator.submit(None, _messages(f"Post {i}"), GenerationParams(max_tokens=8)) for i in (2, 3)
        ]
        for handle in again:
            assert handle.wait(60).finish_reason == "length" and len(handle.token_ids) == 8
    finally:
        generator.close()


def test_close_fails_queued_requests_cleanly(models):
    generator = LocalGenerator(models["base"], max_batch_size=1, batch_wait_ms=0)
    running = generator.submit(None, _messages("a"), GenerationParams(max_tokens=800))
    queued = generator.submit(None, _messages("b"), GenerationParams(max_tokens=8))
    while not running.text and not running.done:
        time.sleep(0.01)
    generator.close()
    for handle in (running, queued):
        out = handle.wait(5)
        assert out.finish_reason == "error" and out.error == "the generator was closed"
    with pytest.raises(RuntimeError, match="closed"):
        generator.submit(None, _messages("c"), GenerationParams())


def test_frequency_and_presence_penalties_count_completion_tokens_only():
    """OpenAI's semantics, per row: each earlier occurrence in the completion lowers a token's
    logit by the frequency penalty, any occurrence by the presence penalty once; the prompt
    (left-padded to one width) is not counted, and a row without penalties is untouched."""
    import torch

    from twin_assets.serving.sampling import RowSampler

    width = 3
    input_ids = torch.tensor([[5, 5, 5, 1, 1, 2], [0, 5, 5, 3, 4, 4]])
    scores = torch.zeros(2, 8)
    sampler = RowSampler(
        [0.0, 0.0], [1.0, 1.0], [None, None], penalties=[(0.5, 1.0), (0.0, 0.0)], prompt_width=width
    )
    out = sampler(input_ids, scores.clone())
    expected = torch.zeros(8)
    expected[1] = -(0.5 * 2 + 1.0)
    expected[2] = -(0.5 * 1 + 1.0)
    assert torch.equal(out[0], expected)  # token 5 is only in the prompt: not penalised
    assert torch.equal(out[1], torch.zeros(8))
