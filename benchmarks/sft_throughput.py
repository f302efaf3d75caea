"""SFT throughput: plain TRL defaults (a), plain TRL + packing (b), this project's config (c).

    python benchmarks/sft_throughput.py --out results.json            # H100: Llama-3.2-1B shape
    python benchmarks/sft_throughput.py --smoke --out /tmp/smoke.json # CPU, tiny model, < 2 min

All three variants train the SAME synthetic conversations (log-normal lengths, median 400
tokens, max 2,048; random token ids mapped 1:1 to words) with LoRA r=32 on all linear layers,
on the same random-weights model. Each variant runs `--warmup` steps that are not timed, then
is timed until it has processed `--tokens` useful (non-padding) tokens; figures are useful
tokens/s. (c) is built by `twin_assets.training.sft.build_sft_trainer`, i.e. the exact code
path of the `sft_model` asset (padding-free BFD packing, no gradient checkpointing, bigger
packed batch, flash-attn varlen or flex_attention block-sparse attention on CUDA, fused AdamW,
tf32, Liger kernels if installed, bf16).

MFU = achieved FLOPs / 989e12 (H100 SXM dense bf16 peak). Reported two ways:
  mfu_6n  = 6 * N * tokens/s / peak  (the usual full-fine-tune convention, N = all params)
  mfu_lora = (4 * N + 6 * N_trainable) * tokens/s / peak  (LoRA: frozen weights need forward
             and input-gradient matmuls, 2N + 2N, but no weight-gradient matmul)
Attention FLOPs are not counted (conservative).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PEAK_BF16 = 989e12


def model_shape(smoke: bool) -> dict:
    if smoke:
        return dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            vocab_size=2048,
        )
    return dict(
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
    )


def build_tokenizer(vocab_size: int, path: Path):
    """WordLevel tokenizer: word `w<i>` is token i, so text lengths in tokens are exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for i in range(len(specials), vocab_size):
        vocab[f"w{i}"] = i
    vocab.update({"system": vocab_size, "user": vocab_size + 1, "assistant": vocab_size + 2})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    hf.add_special_tokens({"additional_special_tokens": specials[1:]})
    from twin_assets.training.base_model import PROJECT_CHAT_TEMPLATE

    hf.chat_template = PROJECT_CHAT_TEMPLATE
    hf.save_pretrained(path)
    return hf


def synthetic_rows(n: int, vocab_size: int, max_len: int, median: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = max(16, min(max_len - 24, int(rng.lognormvariate(math.log(median), 0.6))))
        prompt_len = max(4, length // 5)
        words = [f"w{rng.randrange(4, vocab_size)}" for _ in range(length)]
        rows.append({"instruction": " ".join(words[:prompt_len]), "output": " ".join(words[prompt_len:])})
    return rows


class Budget:
    """Stops training once `tokens` useful tokens were processed after `warmup` steps."""

    def __new__(cls, warmup: int, tokens: int):
        from transformers import TrainerCallback

        from twin_assets.training.runtime import ThroughputCallback

        class _Budget(ThroughputCallback, TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                super().on_step_end(args, state, control, **kw)
                if state.global_step > warmup and self.measured_tokens >= tokens:
                    control.should_training_stop = True

        return _Budget(warmup_steps=warmup)


def run_variant(name: str, model_dir: Path, rows: list[dict], args, shape: dict, work: Path) -> dict:
    import torch
    from transformers import AutoTokenizer

    from twin_assets.training.chat import instruction_messages

    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if name in {"a", "b"}:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM
        from trl import SFTConfig, SFTTrainer

        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.bfloat16 if on_gpu else torch.float32
        )
        ds = Dataset.from_list(
            [{"messages": instruction_messages(r["instruction"], r["output"], None)} for r in rows]
        )
        cfg = SFTConfig(
            output_dir=str(work / name),
            max_steps=10**6,
            report_to=[],
            save_strategy="no",
            packing=(name == "b"),
            include_num_input_tokens_seen="non_padding",
            logging_steps=10**6,
            disable_tqdm=True,
            use_cpu=not on_gpu,
            bf16=on_gpu,
            **({"max_length": 256, "per_device_train_batch_size": 2} if args.smoke else {}),
        )
        trainer = SFTTrainer(
            model=model,
            args=cfg,
            train_dataset=ds,
            processing_class=tok,
            peft_config=LoraConfig(r=32, lora_alpha=64, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        settings = {
            "packing": cfg.packing,
            "per_device_batch": cfg.per_device_train_batch_size,
            "max_length": cfg.max_length,
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "attn": model.config._attn_implementation,
        }
    else:
        from twin_assets.training.config import SFTTrainingConfig
        from twin_assets.training.sft import build_sft_trainer

        cfg = SFTTrainingConfig(
            base_model=str(model_dir),
            method="lora",
            lora_r=32,
            lora_alpha=64,
            lora_dropout=0.0,
            max_steps=10**6,
            max_length=args.c_max_length,
            per_device_batch_size=args.c_batch,
            packing=True,
            gradient_checkpointing=False,
            bf16="true" if on_gpu else "false",
            completion_only_loss=True,
            logging_steps=10**6,
            learning_rate=2e-4,
        )
        trainer, tok, _, hyper = build_sft_trainer(
            str(model_dir),
            rows,
            [],
            cfg,
            work / name,
            attn_implementation=args.attn,
            extra_args={"torch_compile": args.compile} if args.compile else None,
        )
        settings = {
            k: hyper[k]
            for k in (
                "per_device_batch_size",
                "max_length",
                "packing",
                "gradient_checkpointing",
                "attn_implementation",
                "bf16",
            )
        }
        settings["optim"] = (
            trainer.args.optim.value if hasattr(trainer.args.optim, "value") else str(trainer.args.optim)
        )
        settings["liger"] = bool(getattr(trainer.args, "use_liger_kernel", False))
        settings["torch_compile"] = args.compile
    meter = Budget(args.warmup, args.tokens)
    trainer.add_callback(meter)
    trainer.train()
    total, trainable = 0, 0
    for p in trainer.model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    tps = meter.tokens_per_second
    out = {
        "variant": name,
        "tokens_per_s": round(tps, 1),
        "measured_tokens": meter.measured_tokens,
        "measured_seconds": round(meter.measured_seconds, 3),
        "steps": trainer.state.global_step,
        "warmup_steps": args.warmup,
        "params_total": total,
        "params_trainable": trainable,
        "mfu_6n": 6 * total * tps / PEAK_BF16,
        "mfu_lora": (4 * total + 6 * trainable) * tps / PEAK_BF16,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
        "settings": settings,
    }
    del trainer
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model on CPU, seconds")
    p.add_argument("--out", default="sft_throughput.json")
    p.add_argument("--variants", default="a,b,c")
    p.add_argument("--samples", type=int, default=0)
    p.add_argument("--tokens", type=int, default=0, help="useful tokens to time per variant")
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--c-batch", type=int, default=0, help="(c) per-device batch of packed rows")
    p.add_argument("--c-max-length", type=int, default=0, help="(c) packed row length")
    p.add_argument("--attn", default="auto", help="(c) attention: auto|flash_attention_2|flex_attention|sdpa")
    p.add_argument("--compile", action="store_true", help="(c) also torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.samples = args.samples or (64 if args.smoke else 2000)
    args.tokens = args.tokens or (6000 if args.smoke else 400_000)
    args.warmup = args.warmup or (1 if args.smoke else 3)
    args.c_batch = args.c_batch or (2 if args.smoke else 4)
    args.c_max_length = args.c_max_length or (512 if args.smoke else 4096)
    os.environ.setdefault("WANDB_MODE", "disabled")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = model_shape(args.smoke)
    work = Path(tempfile.mkdtemp(prefix="sft-bench-"))
    model_dir = work / "model"
    tok = build_tokenizer(shape["vocab_size"], model_dir)
    torch.manual_seed(args.seed)
    config = LlamaConfig(
        **{**shape, "vocab_size": len(tok)},
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(model_dir)
    del model
    rows = synthetic_rows(
        args.samples,
        shape["vocab_size"],
        2048 if not args.smoke else 512,
        400 if not args.smoke else 100,
        args.seed,
    )
    results, errors = {}, {}
    for name in [v.strip() for v in args.variants.split(",")]:
        t0 = time.time()
        try:
            results[name] = run_variant(name, model_dir, rows, args, shape, work)
        except Exception as exc:  # one variant failing must not lose the others' figures
            import traceback

            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"({name}) FAILED: {errors[name]}", flush=True)
            if name != "c" or args.attn != "auto" or not torch.cuda.is_available():
                continue
            # the block-sparse kernel can fail at its first forward (a Triton compile, a
            # transformers/torch mismatch): one device session must still yield a (c) figure
            args.attn = "sdpa"
            print("(c) retrying with attn=sdpa", flush=True)
            try:
                results[name] = run_variant(name, model_dir, rows, args, shape, work)
                results[name]["settings"]["attn_fallback_from"] = errors[name][:300]
            except Exception as exc2:
                traceback.print_exc()
                errors[name] += f" | sdpa retry: {type(exc2).__name__}: {exc2}"[:1000]
                continue
        r = results[name]
        print(
            f"({name}) {r['tokens_per_s']:>10.1f} useful tok/s  MFU(6N) {r['mfu_6n']:.1%}  "
            f"MFU(LoRA) {r['mfu_lora']:.1%}  peak {r['peak_memory_gib']} GiB  "
            f"[{r['measured_tokens']} tok in {r['measured_seconds']}s, wall {time.time() - t0:.0f}s] {r['settings']}",
            flush=True,
        )
        Path(args.out).with_suffix(".partial.json").write_text(json.dumps(results, indent=2))
    ratios = {}
    if "a" in results and "b" in results:
        ratios["b/a"] = results["b"]["tokens_per_s"] / results["a"]["tokens_per_s"]
    if "b" in results and "c" in results:
        ratios["c/b"] = results["c"]["tokens_per_s"] / results["b"]["tokens_per_s"]
    if "a" in results and "c" in results:
        ratios["c/a"] = results["c"]["tokens_per_s"] / results["a"]["tokens_per_s"]
    print("ratios:", {k: round(v, 2) for k, v in ratios.items()})
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    payload = {
        "command": " ".join(sys.argv),
        "device": device,
        "smoke": args.smoke,
        "shape": shape,
        "samples": args.samples,
        "token_budget": args.tokens,
        "results": results,
        "errors": errors,
        "ratios": ratios,
        "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft")},
    }
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
