"""Deterministic generators for when no LLM is configured.

- `offline_instruction`: the request a reader would have made to get an extract, written from the
  extract's title, heading, docstring and key phrases with per-category templates. Varied (the
  template is picked by a hash of the extract and the seed) yet reproducible: same data and seed,
  same instructions, same dataset version.
- `offline_generic_answer`: a bland, generic answer to a prompt, the "rejected" side of a
  preference pair when neither an LLM nor the local base model is available. It is deliberately
  the voice we want the twin to move away from (filler, lists of platitudes); cards label it
  "offline-generic" so nobody mistakes it for a model's output.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from twin_assets.datasets.extracts import Extract
from twin_assets.domain.documents import Category

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just let me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves one two get got
    make made much many every really thing things way lot like even still may might must us use
    used using new first last well back via per etc it's don't i'm i've you're that's can't won't
    doesn't isn't didn't we're they're let's without anyone everyone nobody somebody always never
    almost less rather whether know three four five ten quite already sure else often usually
    thing start started keep kept took take want wanted need needed said says see seen go going
    come came look looks""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#.'-]*[A-Za-z0-9+#]|[A-Za-z]")


def _pick(key: str, seed: int, n: int) -> int:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest(), 16) % n


def key_phrases(text: str, k: int = 3) -> list[str]:
    """RAKE-style key phrases: runs of content words scored by word degree / frequency."""
    phrases: list[list[str]] = []
    for fragment in re.split(r"[.,;:!?()\[\]{}\"\n—–]+|\s-\s", text):
        current: list[str] = []
        for token in fragment.split():
            word = token.strip("`*_'\"").lower()
            if not _WORD.fullmatch(word) or word in STOPWORDS or word.isdigit():
                if current:
                    phrases.append(current)
                current = []
            else:
                current.append(word)
        if current:
            phrases.append(current)
    phrases = [p for p in phrases if 1 <= len(p) <= 3]
    freq: Counter[str] = Counter()
    degree: Counter[str] = Counter()
    for p in phrases:
        for w in p:
            freq[w] += 1
            degree[w] += len(p)
    scored: dict[str, float] = {}
    for p in phrases:
        phrase = " ".join(p)
        if len(phrase) < 4:
            continue
        # RAKE favours long phrases; weigh by how often the words recur in the text instead
        scored[phrase] = max(scored.get(phrase, 0.0), sum(freq[w] for w in p) / len(p) ** 0.5)
    ranked = sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))
    out: list[str] = []
    for phrase, _ in ranked:
        if any(phrase in o or o in phrase for o in out):
            continue
        out.append(phrase)
        if len(out) == k:
            break
    return out


def _topic(e: Extract) -> str:
    heading = e.heading.strip().rstrip(":?.!")
    if heading and e.category != Category.REPOSITORIES:
        return heading[0].lower() + heading[1:] if not heading[:2].isupper() else heading
    phrases = key_phrases(e.text, 1)
    return phrases[0] if phrases else (e.title or "this topic")


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_ARTICLE_TEMPLATES = [
    'Write the section "{heading}" of my article "{title}". Cover {phrases}.',
    'For my article "{title}", explain {topic}. Make sure to discuss {phrases}.',
    "Draft a few paragraphs on {topic} for a technical blog post titled \"{title}\", touching on {phrases}.",
    "I'm writing about {title_lower}. Write the part that deals with {topic}, including {phrases}.",
    "Explain {topic} to engineers reading an article called \"{title}\". Bring in {phrases}.",
]
_ARTICLE_INTRO_TEMPLATES = [
    'Write the opening of my article "{title}". Set up {phrases}.',
    'Write an introduction for a blog post titled "{title}" that brings up {phrases}.',
]
_POST_TEMPLATES = [
    "Write a LinkedIn post about {topic}. Mention {phrases}.",
    "Draft a short social media post sharing my take on {topic}, with {phrases}.",
    "Write a post for my professional network about {phrases}.",
    "Share a lesson learned about {topic} in a LinkedIn post; bring up {phrases}.",
]
_CODE_TEMPLATES = {
    "function": [
        "Write a {lang} function `{name}` that {doc}.",
        "Implement `{name}` in {lang}: {doc}.",
        "In {path}, write the {lang} function `{name}`. It should {doc}.",
    ],
    "class": [
        "Write a {lang} class `{name}` that {doc}.",
        "Implement the {lang} class `{name}` for {path}: {doc}.",
    ],
    "file": [
        "Write the file `{path}` ({lang}) for my repository \"{title}\". It deals with {phrases}.",
        "Show me the {lang} code of `{path}` in the \"{title}\" project, covering {phrases}.",
    ],
    "readme": [
        'Write the "{heading}" part of the README for my repository "{title}", covering {phrases}.',
        'Document {phrases} in the README of "{title}".',
    ],
}


def _doc_clause(docstring: str, name: str, phrases: list[str]) -> str:
    first = docstring.strip().split("\n\n")[0].replace("\n", " ").strip().rstrip(".")
    if first:
        # "Return the x" -> "returns the x" reads better after "that"
        words = first.split(" ", 1)
        verb = words[0]
        if verb[:1].isupper() and verb.lower() not in STOPWORDS and not verb.endswith("s"):
            verb = verb.lower() + ("es" if verb.lower().endswith(("sh", "ch", "x")) else "s")
        else:
            verb = verb[:1].lower() + verb[1:]
        return " ".join([verb, *words[1:]])
    readable = name.replace("_", " ").strip()
    return f"handles {readable}" + (f" ({_join(phrases)})" if phrases else "")


def offline_instruction(e: Extract, seed: int = 0) -> str:
    """The request an extract answers, from its own structure (no LLM, deterministic)."""
    phrases = key_phrases(e.text, 4)
    topic = _topic(e)
    phrases = [p for p in phrases if p != topic][:3]
    title = e.title.strip() or "my notes"
    values = {
        "title": title,
        "title_lower": title[0].lower() + title[1:] if title else title,
        "heading": e.heading,
        "topic": topic,
        "phrases": _join(phrases) or topic,
    }
    if e.category == Category.ARTICLES:
        templates = _ARTICLE_TEMPLATES if e.heading else _ARTICLE_INTRO_TEMPLATES
    elif e.category == Category.POSTS:
        templates = _POST_TEMPLATES
    else:
        path, _, name = e.heading.partition(":")
        values.update(
            path=path,
            name=name or path,
            lang=(e.code_language or "code").capitalize() if e.code_language != "javascript"
            else "JavaScript",
            doc=_doc_clause(e.docstring, name or path, phrases[:2]),
        )
        templates = _CODE_TEMPLATES.get(e.kind, _CODE_TEMPLATES["file"])
    template = templates[_pick(e.id, seed, len(templates))]
    return re.sub(r"\s+", " ", template.format(**values)).strip()


_GENERIC_OPENERS = [
    "Great question! {topic} is an important topic that many people are interested in today.",
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
    "In conclusion, {topic} plays a crucial role, and by keeping these points in mind you can make informed decisions.",
    "Overall, it depends on your specific needs and context. I hope this helps!",
]


def offline_generic_answer(prompt: str, category: Category, seed: int = 0) -> str:
    """A generic assistant-style answer to `prompt` (deterministic; no author voice at all)."""
    phrases = key_phrases(prompt, 3) or ["this topic"]
    topic = phrases[0]
    code_name = re.search(r"`([A-Za-z_][\w./-]*)`", prompt)
    if category == Category.REPOSITORIES and code_name:
        name = re.sub(r"\W", "_", code_name.group(1).rsplit("/", 1)[-1].split(".")[0]) or "solution"
        return (
            f"Sure! Here is a simple implementation of `{name}`:\n\n"
            f"```python\ndef {name}(*args, **kwargs):\n"
            f'    """{phrases[0].capitalize()}."""\n'
            f"    result = None\n    # Add your logic here\n    return result\n```\n\n"
            "This is a basic template that you can adapt to your specific requirements. "
            "Make sure to add error handling and tests as needed."
        )
    key = f"{prompt}|{category}"
    parts = [
        _GENERIC_OPENERS[_pick(key + "o", seed, len(_GENERIC_OPENERS))].format(
            topic=topic, topic_cap=topic.capitalize()
        )
    ]
    for i, p in enumerate(phrases):
        parts.append(
            f"{i + 1}. " + _GENERIC_POINTS[_pick(key + p, seed, len(_GENERIC_POINTS))].format(p=p)
        )
    parts.append(
        _GENERIC_CLOSERS[_pick(key + "c", seed, len(_GENERIC_CLOSERS))].format(topic=topic)
    )
    return "\n\n".join(parts)
