"""The generic "rejected" answer of a preference pair when no model can write one.

When neither an LLM nor the local base model is available, the rejected side of a preference pair
is a bland, generic answer to the prompt. It is deliberately the voice we want the twin to move
away from (filler, lists of platitudes); cards label it "offline-generic" so nobody mistakes it
for a model's output. Deterministic: the same prompt, category and seed give the same answer.
"""

from __future__ import annotations

import re

from twin_assets.datasets.offline.phrases import key_phrases
from twin_assets.datasets.offline.templates import _pick
from twin_assets.domain.documents import Category

# Words of the request itself ("Write a LinkedIn post about ..."), not of its topic.
_REQUEST_WORDS = (  # noqa: SIM905
    "post linkedin post blog post social media post article section part introduction opening "
    "paragraph paragraphs readme repository project function class file module test code network "
    "professional network take lesson engineers readers field fields table tables key keys"
).split()


def offline_generic_answer(prompt: str, category: Category, seed: int = 0) -> str:
    """A generic assistant-style answer to `prompt` (deterministic; no author voice at all)."""
    quoted = re.findall(r'"([^"]{3,})"', prompt)
    body = re.sub(r'"[^"]*"|`[^`]*`', " ", prompt)
    phrases = key_phrases(body, 3, exclude=_REQUEST_WORDS)
    if not phrases:
        phrases = [quoted[0] if quoted else "this topic"]
    topic = phrases[0]
    # the symbol asked for (`split_text`), not the file it lives in (`src/chunkwise/splitter.py`)
    code_names = re.findall(r"`([A-Za-z_][\w./-]*)`", prompt)
    code_name = next(
        (n for n in code_names if re.fullmatch(r"[A-Za-z_]\w*", n)), code_names[0] if code_names else None
    )
    if category == Category.REPOSITORIES and code_name:
        name = re.sub(r"\W", "_", code_name.rsplit("/", 1)[-1].split(".")[0]) or "solution"
        return (
            f"Sure! Here is a simple implementation of `{name}`:\n\n"
            f"```python\ndef {name}(*args, **kwargs):\n"
            f'    """{topic[:1].upper() + topic[1:]}."""\n'
            f"    result = None\n    # Add your logic here\n    return result\n```\n\n"
            "This is a basic template that you can adapt to your specific requirements. "
            "Make sure to add error handling and tests as needed."
        )
    key = f"{prompt}|{category}"
    parts = [
        _GENERIC_OPENERS[_pick(key + "o", seed, len(_GENERIC_OPENERS))].format(
            topic=topic, topic_cap=topic[:1].upper() + topic[1:]
        )
    ]
    for i, p in enumerate(phrases):
        parts.append(f"{i + 1}. " + _GENERIC_POINTS[_pick(key + p, seed, len(_GENERIC_POINTS))].format(p=p))
    parts.append(_GENERIC_CLOSERS[_pick(key + "c", seed, len(_GENERIC_CLOSERS))].format(topic=topic))
    return "\n\n".join(parts)


_GENERIC_OPENERS = [
    "Great question! {topic_cap} is an important topic that many people are interested in today.",
    "Certainly! Here is an overview of {topic}.",
    "{topic_cap} is a broad subject, and there are several key aspects to consider.",
]
_GENERIC_POINTS = [
    "It is important to understand the fundamentals of {p} before diving deeper.",
    "Best practices around {p} can help teams achieve better results.",
    "There are many different approaches to {p}, each with its own pros and cons.",
    "Staying up to date with the latest trends in {p} is essential for success.",
]
_GENERIC_CLOSERS = [
    "In conclusion, {topic} plays a crucial role, and by keeping these points in mind you can "
    "make informed decisions.",
    "Overall, it depends on your specific needs and context. I hope this helps!",
]
