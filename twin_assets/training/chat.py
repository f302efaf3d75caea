"""One chat template end to end: training samples, the saved model and the endpoint all use it.

WHY: the reference implementation trained on Alpaca-style text but prompted with a different
format at inference, so the model never saw its serving prompt during training. Here the
template is resolved ONCE from the base tokenizer (`resolve_chat_template`), set on the
tokenizer before training, saved with the adapter, and `format_prompt` renders inference
prompts with that same saved tokenizer.
"""

from __future__ import annotations

from typing import Any

from twin_assets.training.base_model import PROJECT_CHAT_TEMPLATE

DEFAULT_SYSTEM_PROMPT = (
    "You are the author's writing twin: answer in the author's own voice, style and vocabulary."
)


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "{% generation %}" in template.replace("{%-", "{%").replace("-%}", "%}")


def resolve_chat_template(tokenizer: Any) -> str:
    """The template to train with: the model's own when it can mask assistant tokens.

    Order: (1) the tokenizer's template if it already has `{% generation %}` markers; (2) trl's
    training variant of a known template (Llama 3, Qwen, Gemma, ...), which renders identically
    but adds the markers; (3) the project's ChatML template with markers (SmolLM2's native
    format is ChatML, so for the default model this is the same text layout it was tuned on).
    """
    current = tokenizer.chat_template
    if isinstance(current, dict):
        current = current.get("default")
    if isinstance(current, str) and has_generation_markers(current):
        return current
    if current:
        try:
            from trl.chat_template_utils import get_training_chat_template

            patched = get_training_chat_template(tokenizer)
        except Exception:  # unsupported template family: fall through to the project template
            patched = None
        if patched and has_generation_markers(patched):
            return patched
    return PROJECT_CHAT_TEMPLATE


def apply_project_template(tokenizer: Any) -> str:
    """Set the resolved template on the tokenizer (saved with it later) and a pad token."""
    template = resolve_chat_template(tokenizer)
    tokenizer.chat_template = template
    if template == PROJECT_CHAT_TEMPLATE and "<|im_end|>" in tokenizer.get_vocab():
        # ChatML turns end with <|im_end|>: generation must stop there, not at a token never trained.
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        # A distinct pad token keeps the end-of-turn token from being masked out as padding.
        for candidate in ("<pad>", "<|endoftext|>", "<|finetune_right_pad_id|>", tokenizer.unk_token):
            if candidate and candidate in tokenizer.get_vocab() and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.pad_token = tokenizer.eos_token
    return template


def instruction_messages(
    instruction: str, output: str | None = None, system: str | None = DEFAULT_SYSTEM_PROMPT
) -> list[dict[str, str]]:
    """Conversational sample: system / user / (assistant)."""
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": instruction})
    if output is not None:
        messages.append({"role": "assistant", "content": output})
    return messages


def format_prompt(tokenizer: Any, instruction: str, system: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """The inference prompt, rendered with the template the model was trained with.

    Pass the tokenizer loaded from the registered model version (it carries the training
    template). Ends with the assistant header, so generation continues as the assistant.
    """
    return tokenizer.apply_chat_template(
        instruction_messages(instruction, None, system), tokenize=False, add_generation_prompt=True
    )
