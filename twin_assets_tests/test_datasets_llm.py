"""The text-generation resource against a real HTTP server through the real `openai` client,
and the transformers backend on a tiny random Llama built locally."""

from __future__ import annotations

import pytest

from resources.llm import TextGeneratorResource
from twin_assets_tests.fake_openai_server import FakeOpenAIServer

INSTRUCTION_MSGS = [
    {"role": "system", "content": 'Reply with JSON only: {"instruction": "..."}'},
    {"role": "user", "content": "Title: Pipelines\n\nText:\nSome text."},
]
PLAIN_MSGS = [{"role": "user", "content": "Tell me about pipelines."}]


@pytest.fixture(scope="module")
def fake_llm():
    server = FakeOpenAIServer(slow_seconds=2.0).start()
    yield server
    server.stop()


@pytest.fixture
def llm(fake_llm):
    fake_llm.reset()
    res = TextGeneratorResource(
        backend="openai",
        base_url=fake_llm.base_url,
        model="fake-model",
        api_key="sk-test",
        max_retries=2,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        timeout_s=0.5,
        max_concurrency=3,
    )
    return res


def test_normal_json_answer_and_token_accounting(llm, fake_llm):
    gen = llm.get_generator()
    g = gen.generate(INSTRUCTION_MSGS, json_keys=["instruction"])
    assert g is not None and g.data["instruction"].startswith("[fake-llm]")
    assert g.prompt_tokens > 0 and g.completion_tokens > 0
    g2 = gen.generate(PLAIN_MSGS)
    u = gen.usage
    assert u.requests == 2 and u.successes == 2 and u.retries == 0
    assert u.prompt_tokens == g.prompt_tokens + g2.prompt_tokens
    assert u.completion_tokens == g.completion_tokens + g2.completion_tokens
    assert fake_llm.bodies[0]["model"] == "fake-model"
    assert fake_llm.bodies[0]["response_format"] == {"type": "json_object"}
    meta = u.as_metadata()
    assert meta["llm_total_tokens"] == u.total_tokens
    assert "sk-test" not in repr(meta) and "sk-test" not in repr(u)


@pytest.mark.parametrize("failure", ["429", "500"])
def test_transient_errors_are_retried(llm, fake_llm, failure):
    fake_llm.script(failure, failure, "ok")
    gen = llm.get_generator()
    g = gen.generate(PLAIN_MSGS)
    assert g is not None and g.attempts == 3
    assert fake_llm.requests == 3  # SDK retries are off: every attempt is ours, and counted
    assert gen.usage.retries == 2 and gen.usage.requests == 3 and gen.usage.skipped == {}


def test_retries_give_up_and_count_the_reason(llm, fake_llm):
    fake_llm.script("500", "500", "500", "ok")
    gen = llm.get_generator()
    assert gen.generate(PLAIN_MSGS) is None
    assert fake_llm.requests == 3  # 1 + max_retries
    assert gen.usage.skipped == {"server_error": 1}


def test_timeout_is_retried_then_skipped(llm, fake_llm):
    fake_llm.script("slow", "ok")
    gen = llm.get_generator()
    assert gen.generate(PLAIN_MSGS) is not None
    assert gen.usage.retries == 1
    fake_llm.script("slow", "slow", "slow")
    assert gen.generate(PLAIN_MSGS) is None
    assert gen.usage.skipped == {"timeout": 1}


@pytest.mark.parametrize(
    "behaviour,reason", [("bad_json", "bad_json"), ("empty", "empty"), ("truncated", "truncated")]
)
def test_malformed_output_is_skipped_and_counted(llm, fake_llm, behaviour, reason):
    fake_llm.script(behaviour)
    gen = llm.get_generator()
    assert gen.generate(INSTRUCTION_MSGS, json_keys=["instruction"]) is None
    assert fake_llm.requests == 1  # not retried: the server answered, the answer was unusable
    assert gen.usage.skipped == {reason: 1}
    assert gen.usage.successes == 0


def test_truncated_answer_kept_only_when_allowed(llm, fake_llm):
    """A rejected DPO answer only needs its voice; a JSON answer cut short is never usable."""
    fake_llm.script("truncated")
    gen = llm.get_generator()
    kept = gen.generate(PLAIN_MSGS, allow_truncated=True)
    assert kept is not None and kept.finish_reason == "length" and kept.text
    fake_llm.script("truncated")
    assert gen.generate(INSTRUCTION_MSGS, json_keys=["instruction"], allow_truncated=True) is None
    assert gen.usage.successes == 1 and gen.usage.skipped == {"truncated": 1}


def test_missing_json_key_is_skipped(llm, fake_llm):
    gen = llm.get_generator()
    # the fake answers plain prose to a prompt that does not ask for an instruction
    assert gen.generate(PLAIN_MSGS, json_keys=["instruction"]) is None
    assert gen.usage.skipped == {"bad_json": 1}


def test_generate_many_keeps_order_and_limits_concurrency(llm, fake_llm):
    fake_llm.script("ok", "empty", "ok", "429")
    gen = llm.get_generator()
    batch = [INSTRUCTION_MSGS] * 6
    results = gen.generate_many(batch, json_keys=["instruction"])
    assert len(results) == 6
    assert sum(r is None for r in results) == 1  # the empty answer; the 429 was retried
    u = gen.usage
    assert u.requests == fake_llm.requests == 7
    assert u.skipped == {"empty": 1} and u.retries == 1 and u.successes == 5


def test_client_error_is_not_retried(fake_llm):
    fake_llm.reset()
    res = TextGeneratorResource(
        backend="openai",
        base_url=fake_llm.base_url.replace("/v1", "/wrong"),
        model="m",
        max_retries=3,
        backoff_base_s=0.01,
    )
    gen = res.get_generator()
    assert gen.generate(PLAIN_MSGS) is None
    assert gen.usage.skipped == {"client_error": 1} and gen.usage.requests == 1


def test_offline_backend_refuses_to_generate():
    gen = TextGeneratorResource().get_generator()
    assert not gen.uses_llm and gen.name == "offline"
    with pytest.raises(RuntimeError, match="no LLM configured"):
        gen.generate(PLAIN_MSGS)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A random 2-layer Llama and a BPE tokenizer trained here: exercises the transformers path
    (chat template, batching, token accounting, truncation) without any download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"])
    tok.train_from_iterator(["write a post about data pipelines and models"] * 50, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    fast.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_transformers_backend_generates_and_counts(tiny_llama):
    res = TextGeneratorResource(backend="transformers", model=str(tiny_llama), max_concurrency=2)
    gen = res.get_generator()
    results = gen.generate_many([PLAIN_MSGS, INSTRUCTION_MSGS, PLAIN_MSGS], max_tokens=8)
    u = gen.usage
    assert u.requests == 3 and u.prompt_tokens > 0
    # a random model rarely emits EOS within 8 tokens: such outputs are truncated and skipped,
    # the rest are accepted; either way every result is accounted for
    assert u.successes + sum(u.skipped.values()) == 3
    assert all(r is None or r.completion_tokens <= 8 for r in results)
    assert u.completion_tokens > 0
    # greedy decoding is deterministic, and the model is cached per process
    # (same batch: left padding differs between batch shapes, so compare like with like)
    again = res.get_generator().generate_many([PLAIN_MSGS, INSTRUCTION_MSGS, PLAIN_MSGS], max_tokens=8)
    assert [r.text if r else None for r in again] == [r.text if r else None for r in results]


def test_base_model_generator_only_when_on_disk(tiny_llama, tmp_path):
    assert TextGeneratorResource(base_model=str(tmp_path)).get_base_model_generator() is None
    gen = TextGeneratorResource(base_model=str(tiny_llama)).get_base_model_generator()
    assert gen is not None and gen.backend == "transformers"


def test_generator_for_checks_the_model_it_is_given_not_the_configured_one(fake_llm):
    """Regression: the openai branch checked the resource's `model` instead of the argument, so a
    generator for another model was built with no model name (and one with a name was refused
    when the resource had none)."""
    configured = TextGeneratorResource(backend="openai", base_url=fake_llm.base_url, model="m")
    with pytest.raises(ValueError, match="needs a model name"):
        configured.generator_for("openai", "")
    unnamed = TextGeneratorResource(backend="openai", base_url=fake_llm.base_url)
    gen = unnamed.generator_for("openai", "other-model")
    assert gen.uses_llm and gen.name == "openai:other-model"


def test_offline_generator_satisfies_the_domain_protocol():
    """The dataset code is typed against `twin_assets.domain.generation.TextGenerator`; the
    resource's generators are what the assets hand it."""
    from twin_assets.domain.generation import TextGenerator

    gen: TextGenerator = TextGeneratorResource().get_generator()
    assert gen.usage.requests == 0 and gen.generate_many([]) == []


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"instruction": "x"}', {"instruction": "x"}),
        ('```json\n{"score": 4}\n```', {"score": 4}),
        ('Sure! {"instruction": "y"} Hope that helps.', {"instruction": "y"}),
        ("[1, 2]", None),
        ("no json here", None),
    ],
)
def test_parse_json_object(text, expected):
    from resources.llm.json_output import parse_json_object

    assert parse_json_object(text) == expected
