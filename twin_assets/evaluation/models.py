"""The models under evaluation, loaded once per run: one base model in memory with every LoRA
adapter attached to it (peft), switched by name; a full fine-tune is loaded on its own.

WHY: loading SmolLM2 takes about a second, but loading it four times (base, SFT, DPO, production)
per metric family would dominate a CPU run; adapters are a few MB and switching is free.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

BASE = "base"


class ModelSpec(BaseModel):
    """One column of the report. `adapter_dir` None is the base model itself."""

    name: str  # base | sft | dpo | production
    version: str  # registry version (the base: its content fingerprint)
    adapter_dir: str | None = None
    label: str = ""  # e.g. "production = dpo" when the alias points at an evaluated version


def is_adapter(directory: str | Path) -> bool:
    return (Path(directory) / "adapter_config.json").is_file()


def _adapter_name(spec: ModelSpec) -> str:
    # peft adapter names may not contain dots; versions are hex
    return f"{spec.name}_{spec.version}"


class ModelSet:
    """Base weights once, adapters keyed by version (production = dpo shares one adapter)."""

    def __init__(
        self,
        base_dir: str | Path,
        specs: Sequence[ModelSpec],
        *,
        chat_template: str | None = None,
        device: str = "cpu",
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device
        self.specs = {s.name: s for s in specs}
        template_source = next(
            (
                s.adapter_dir
                for s in specs
                if s.adapter_dir and Path(s.adapter_dir, "tokenizer_config.json").is_file()
            ),
            str(base_dir),
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(template_source))
        if not self.tokenizer.chat_template and chat_template:
            self.tokenizer.chat_template = chat_template
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = sorted(
            {
                i
                for i in (
                    self.tokenizer.eos_token_id,
                    self.tokenizer.convert_tokens_to_ids("<|im_end|>")
                    if "<|im_end|>" in self.tokenizer.get_vocab()
                    else None,
                )
                if isinstance(i, int)
            }
        )
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        base = base.to(device)  # pyright: ignore[reportArgumentType] (stub confusion)
        base.eval()
        self._full: dict[str, Any] = {}
        self._adapters: dict[str, str] = {}  # spec name -> peft adapter name
        self._model: Any = base
        loaded: dict[str, str] = {}  # adapter dir -> peft adapter name
        for spec in specs:
            if spec.adapter_dir is None:
                continue
            if not is_adapter(spec.adapter_dir):  # a full fine-tune: its own weights
                full = AutoModelForCausalLM.from_pretrained(spec.adapter_dir, dtype=torch.float32)
                full = full.to(device)  # pyright: ignore[reportArgumentType] (stub confusion)
                self._full[spec.name] = full.eval()
                continue
            key = str(Path(spec.adapter_dir).resolve())
            if key in loaded:
                self._adapters[spec.name] = loaded[key]
                continue
            name = _adapter_name(spec)
            if not loaded:
                from peft import PeftModel

                self._model = PeftModel.from_pretrained(base, spec.adapter_dir, adapter_name=name)
            else:
                self._model.load_adapter(spec.adapter_dir, adapter_name=name)
            self._model.eval()
            loaded[key] = name
            self._adapters[spec.name] = name

    @contextmanager
    def use(self, name: str) -> Iterator[Any]:
        """The model for column `name`, ready for a forward pass or `generate`."""
        if name in self._full:
            yield self._full[name]
        elif name in self._adapters:
            self._model.set_adapter(self._adapters[name])
            yield self._model
        elif hasattr(self._model, "disable_adapter"):
            with self._model.disable_adapter():
                yield self._model
        else:
            yield self._model

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def chat_full(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False)
