"""The evaluation's plain logic on inputs of the shapes it meets: author posts and generations,
judge replies (good, malformed, out of range), retrieval results scored with ragas for real, and
the gate's decisions."""

from __future__ import annotations

import math

from twin_assets.domain.features import Chunk, RetrievedChunk
from twin_assets.domain.generation import Generation, GenerationUsage
from twin_assets.evaluation import text_metrics as tm
from twin_assets.evaluation.config import EvaluationConfig
from twin_assets.evaluation.gate import decide
from twin_assets.evaluation.judge import JudgeItem, run_judge
from twin_assets.evaluation.models import ModelSpec
from twin_assets.evaluation.rag import RagQuestion, evaluate_retrieval
from twin_assets.evaluation.report import EvaluationInputs, evaluation_version

AUTHOR_POSTS = [
    "Shipped the new queue today. 🚀\nMeasure first, tune second.\n#backend #latency",
    "Retries hide latency. I learned it the hard way.\nAlways log the p99. #sre",
    "Small PRs win. Every time.\nReview in ten minutes or it rots. #engineering",
]


def test_overlap_scores():
    ref = "Measure first, tune second: latency hides in retries."
    assert tm.rouge_l(ref, ref) == 1.0
    assert tm.rouge_l("", ref) == 0.0
    assert 0 < tm.rouge_l("measure latency in retries", ref) < 1
    assert tm.chrf(ref, ref) > 0.99 and tm.chrf("completely unrelated words", ref) < 0.3


def test_degeneration_separates_loops_from_prose():
    prose = tm.degeneration(AUTHOR_POSTS, [True] * 3)
    loop = tm.degeneration(["the the the the the the the the", "", "ure ure ure ure ure ure"], [False] * 3)
    assert prose["degeneration"] < 0.05 and prose["empty_rate"] == 0
    assert loop["degeneration"] > 0.6 and loop["empty_rate"] == 1 / 3 and loop["truncated_rate"] == 1.0
    assert loop["distinct_2"] < prose["distinct_2"]


def test_style_distance_prefers_the_authors_habits():
    author = tm.style_profile(AUTHOR_POSTS)
    same = tm.style_distance(tm.style_profile(AUTHOR_POSTS), author)
    generic = tm.style_distance(
        tm.style_profile(
            [
                "Great question! There are several key aspects to consider when it comes to "
                "building robust systems, and best practices can help teams achieve better results "
                "in the long run, depending on the specific needs of the organization."
            ]
        ),
        author,
    )
    assert same == 0.0
    assert generic > same + 0.2
    assert author["emoji_per_100w"] > 0 and author["hashtags_per_100w"] > 0


class ScriptedJudge:
    """A `TextGenerator` whose replies are scripted data (None = unusable, reason counted)."""

    def __init__(self, replies: list[dict | None], reason: str = "bad_json"):
        self.replies = list(replies)
        self.reason = reason
        self._usage = GenerationUsage(backend="openai", model="scripted")

    uses_llm = True
    name = "openai:scripted"

    @property
    def usage(self) -> GenerationUsage:
        return self._usage

    def generate(self, messages, **_kw):
        data = self.replies.pop(0) if self.replies else {"score": 3}
        if data is None:
            self._usage.skipped[self.reason] = self._usage.skipped.get(self.reason, 0) + 1
            return None
        return Generation(text=str(data), data=data)

    def generate_many(self, batch, **kw):
        return [self.generate(m, **kw) for m in batch]


def _items(n: int) -> list[JudgeItem]:
    return [
        JudgeItem(instruction=f"q{i}", reference=AUTHOR_POSTS[0], answer="twin", base_answer="base")
        for i in range(n)
    ]


def test_judge_not_configured_gives_no_numbers():
    result = run_judge(None, _items(2))
    assert result.configured is False and result.accuracy is None and result.pairwise_win_rate is None


def test_judge_records_malformed_and_out_of_range_replies():
    # item 1: accuracy 5, style unusable, pairwise 1 (A=twin clearly) then 5 (B=twin clearly)
    # item 2: accuracy "nine" (not an int), style 9 (out of range), pairwise 3, 3 (tie)
    judge = ScriptedJudge(
        [
            {"score": 5},
            None,
            {"score": 1},
            {"score": 5},
            {"score": "nine"},
            {"score": 9},
            {"score": 3},
            {"score": 3},
        ]
    )
    result = run_judge(judge, _items(2))
    assert result.configured and result.accuracy == 5.0 and result.style is None
    assert result.errors == 3
    assert result.error_reasons == {"bad_json": 1, "score_not_integer": 1, "score_out_of_range": 1}
    assert result.pairwise_win_rate == (1.0 + 0.5) / 2
    assert result.position_bias == 0.0


def _chunk(doc: str, pos: int, text: str) -> Chunk:
    return Chunk(
        id=f"{doc}-{pos}",
        author_id="a",
        document_id=doc,
        category="posts",
        platform="linkedin",
        link=f"https://example.com/{doc}",
        position=pos,
        content=text,
        token_count=len(text.split()),
        source_hash="h",
    )


def test_rag_metrics_with_ragas_offline():
    chunks = [
        _chunk("queues", 0, "When a queue backs up I measure before I tune."),
        _chunk("queues", 1, "Latency hides in retries; log the p99."),
        _chunk("reviews", 0, "Small pull requests get reviewed in minutes."),
        _chunk("sourdough", 0, "Feed the starter twice a day and keep it warm."),
    ]

    def retrieve(query: str, k: int) -> list[RetrievedChunk]:
        if "explode" in query:
            raise ConnectionError("vector store down")
        q = set(tm.words(query))
        ranked = sorted(chunks, key=lambda c: -len(q & set(tm.words(c.content))))[:k]
        return [RetrievedChunk.from_payload(c.id, 1.0, c.payload()) for c in ranked]

    questions = [
        RagQuestion(
            question="how do you handle a queue that backs up and latency retries",
            source_document_id="queues",
        ),
        RagQuestion(question="how big should pull requests be reviewed", source_document_id="reviews"),
        RagQuestion(question="something about starter feeding", source_document_id="sourdough"),
        RagQuestion(question="explode", source_document_id="queues"),
        RagQuestion(question="a question whose document has no chunks", source_document_id="gone"),
    ]
    result = evaluate_retrieval(questions, chunks, retrieve, k=2)
    assert result.configured and result.questions == 3 and result.errors == {"ConnectionError": 1}
    assert result.hit_rate == 1.0 and math.isclose(result.mrr or 0, 1.0)
    assert result.context_precision is not None and 0 < result.context_precision <= 1
    assert result.context_recall is not None and 0 < result.context_recall <= 1
    assert evaluate_retrieval(questions, chunks, None, k=2).configured is False


def _rows(**over: dict) -> dict[str, dict]:
    rows = {
        "base": {"version": "b", "nll": 3.0, "degeneration": 0.1},
        "sft": {"version": "s", "nll": 2.5, "preference_accuracy": 0.6, "degeneration": 0.1},
        "dpo": {"version": "d", "nll": 2.4, "preference_accuracy": 0.8, "degeneration": 0.1},
        "production": {"version": "p", "nll": 2.3, "preference_accuracy": 0.9, "degeneration": 0.05},
    }
    for k, v in over.items():
        rows[k].update(v)
    return rows


def test_gate_decisions_name_each_failing_metric_with_both_values():
    cfg = EvaluationConfig(
        nll_margin=0.1, nll_tolerance=0.05, preference_tolerance=0.05, degeneration_tolerance=0.1
    )
    ok = decide(_rows(dpo={"nll": 2.32, "preference_accuracy": 0.88}), cfg, "production")
    assert ok.passed and ok.candidate == "dpo" and ok.compared_with_production
    bad = decide(_rows(dpo={"nll": 2.95, "preference_accuracy": 0.5, "degeneration": 0.5}), cfg, "production")
    assert not bad.passed
    named = {(f.metric, f.against) for f in bad.failures}
    assert named == {
        ("nll", "base"),
        ("degeneration", "base"),
        ("nll", "production"),
        ("preference_accuracy", "production"),
        ("degeneration", "production"),
    }
    text = bad.summary()
    assert "2.9500" in text and "3.0000" in text and "0.5000 vs production 0.9000" in text
    # no production yet, or production is the candidate itself: only the base comparison
    alone = decide({k: v for k, v in _rows().items() if k != "production"}, cfg, None)
    assert alone.passed and not alone.compared_with_production
    same = decide(_rows(), cfg, "dpo")
    assert same.passed and not same.compared_with_production
    # SFT only: SFT is the candidate
    sft_only = decide({k: v for k, v in _rows().items() if k in ("base", "sft")}, cfg, None)
    assert sft_only.candidate == "sft" and sft_only.passed


def test_degeneration_carried_by_one_answer_is_a_note_but_a_consistent_increase_fails():
    """The sample author's case: 8 held-out prompts, one answer loops (0.76 against 0.07) and
    the mean rises past the tolerance; the paired bootstrap says it is not evidence."""
    cfg = EvaluationConfig(degeneration_tolerance=0.1, nll_margin=0.0)
    base_items = [0.0, 0.0, 0.11, 0.07, 0.0, 0.05, 0.0, 0.0]
    one_loop = [0.0, 0.0, 0.11, 0.76, 0.0, 0.05, 0.0, 0.0]
    everywhere = [0.6, 0.7, 0.8, 0.76, 0.5, 0.65, 0.7, 0.9]

    def rows(dpo_items: list[float]) -> dict[str, dict]:
        r = {k: v for k, v in _rows().items() if k != "production"}
        r["base"].update(degeneration=sum(base_items) / 8, degeneration_items=base_items)
        r["dpo"].update(degeneration=sum(dpo_items) / 8 + 0.1, degeneration_items=dpo_items)
        return r

    lucky = decide(rows(one_loop), cfg, None)
    assert lucky.passed, lucky.summary()
    assert any("not significantly over 8 paired answers" in n for n in lucky.notes)
    damaged = decide(rows(everywhere), cfg, None)
    assert not damaged.passed
    assert [(f.metric, f.against) for f in damaged.failures] == [("degeneration", "base")]
    # without per-answer scores (an older report) the mean alone decides, as before
    plain = rows(one_loop)
    del plain["dpo"]["degeneration_items"]
    assert not decide(plain, cfg, None).passed


def test_report_version_depends_on_inputs_and_config_only():
    inputs = EvaluationInputs(
        author="a",
        base_dir="/m",
        models=[ModelSpec(name="base", version="b")],
        data_versions={"instruction": "i1"},
    )
    cfg = EvaluationConfig()
    assert evaluation_version(inputs, cfg) == evaluation_version(inputs.model_copy(), EvaluationConfig())
    assert evaluation_version(inputs, cfg) != evaluation_version(inputs, EvaluationConfig(max_items=8))
    changed = inputs.model_copy(update={"data_versions": {"instruction": "i2"}})
    assert evaluation_version(inputs, cfg) != evaluation_version(changed, cfg)


def test_batched_answer_logprobs_equal_one_by_one_full_computation():
    """Batching (padding, length sorting) and scoring only the answer positions give exactly the
    log-likelihood of the answer computed the plain way, one sequence at a time."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from twin_assets.evaluation.scoring import answer_logprobs

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(config).eval()

    class CharTokenizer:
        pad_token_id = 0

        def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
            return {"input_ids": [1 + (ord(c) % 40) for c in text]}

    pairs = [("abc", "defg"), ("hello there", "xy"), ("q", "a longer answer here")]
    scored = answer_logprobs(model, CharTokenizer(), pairs, batch_size=2)
    for (prompt, answer), got in zip(pairs, scored, strict=True):
        ids = torch.tensor([CharTokenizer()(prompt + answer)["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        assert got.tokens == len(answer)
        assert abs(logp[len(prompt) - 1 :].sum().item() - got.logprob) < 1e-4
