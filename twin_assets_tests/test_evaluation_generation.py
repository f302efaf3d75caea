"""The evaluation decodes as the service does: OpenAI's penalties in batched greedy generation
(one implementation, shared with the service's sampler)."""

from __future__ import annotations

from collections import Counter

import torch

from twin_assets.evaluation.generation import CompletionPenalties, generate_batched
from twin_assets.serving.sampling import RowSampler
from twin_assets_tests.training_fixtures import POSTS


def test_evaluation_and_service_penalise_identically():
    input_ids = torch.tensor([[5, 5, 5, 1, 1, 2], [0, 5, 5, 3, 4, 4]])
    scores = torch.randn(2, 8)
    ours = CompletionPenalties(prompt_width=3, rows=2, frequency=0.5, presence=1.0)(input_ids, scores.clone())
    service = RowSampler([0.0, 0.0], [1.0, 1.0], [None, None], penalties=[(0.5, 1.0)] * 2, prompt_width=3)
    assert torch.equal(ours, service(input_ids, scores.clone()))
    assert ours[0, 5] == scores[0, 5]  # prompt tokens are not counted


def test_penalties_reach_generate_and_break_loops(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twin_assets.training.base_model import build_tiny_llama

    base = build_tiny_llama(tmp_path / "tiny", POSTS * 4)
    model = AutoModelForCausalLM.from_pretrained(str(base)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    prompts = ["How do you test a pipeline?", "Why are small models boring?"]
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>")]

    def repeats(frequency: float) -> int:
        out = generate_batched(
            model, tokenizer, prompts, eos_ids=eos, max_new_tokens=24, frequency_penalty=frequency
        )
        ids = [tokenizer(g.text, add_special_tokens=False)["input_ids"] for g in out]
        return sum(n - 1 for row in ids for n in Counter(row).values())

    # random tiny weights: greedy decoding loops on a few tokens; a strong penalty forbids it
    plain, penalised = repeats(0.0), repeats(2.0)
    assert plain > 0
    assert penalised < plain
