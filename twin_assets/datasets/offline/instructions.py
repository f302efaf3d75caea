"""The offline instruction generators: the request a reader would have made to get an extract.

This is "back-translation": the answer is the author's own text, and the instruction is written
from the extract's title, heading, docstring and key phrases with per-category templates, with
no LLM involved. Prose extracts (article sections, posts, READMEs) get a request to write that
part; code extracts get a request that names the code and says, in plain words, what it does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from twin_assets.datasets.extracts import Extract
from twin_assets.datasets.offline.descriptions import (
    _doc_desc,
    _name_verb_clause,
    _name_words,
    _shorter,
    _test_clause,
)
from twin_assets.datasets.offline.grammar import join_phrases
from twin_assets.datasets.offline.headings import _heading_topic
from twin_assets.datasets.offline.material import (
    _called_names,
    _class_fields,
    _comments,
    _config_sections,
    _lang,
    _module_summary,
)
from twin_assets.datasets.offline.phrases import _nps, prime
from twin_assets.datasets.offline.templates import (
    _CLASS,
    _FILE_CONFIG,
    _FILE_DOC,
    _FILE_EXPORTS,
    _FILE_PHRASES,
    _FUNCTION_BARE,
    _FUNCTION_NOUN,
    _FUNCTION_PASSIVE,
    _FUNCTION_VERB,
    _INTRO,
    _POST,
    _README_INTRO,
    _README_SECTION,
    _SECTION_QUOTED,
    _SECTION_TOPIC,
    _TEST,
    _finish,
    _first_valid,
    _pick,
    _quotable,
    _rotate,
    _with_phrases,
)
from twin_assets.domain.documents import Category


def _prose_instruction(e: Extract, seed: int) -> str:
    title = _quotable(e.title)
    values = {
        "article": f'my article "{title}"' if title else "my article",
        "article_called": f'an article called "{title}"' if title else "an article",
        "blog_post": f'my blog post "{title}"' if title else "my blog post",
        "heading": _quotable(e.heading),
    }
    if e.category == Category.POSTS:
        phrases = _nps(e.text, 3)
        topic = phrases[0] if phrases else "my recent work"
        template = _POST[_pick(e.id, seed, len(_POST))]
        return _with_phrases(template, phrases[1:], e.text, topic=topic, **values)
    if not values["heading"]:
        phrases = _nps(e.text, 3, exclude=[title])
        template = _INTRO[_pick(e.id, seed, len(_INTRO))]
        return _with_phrases(template, phrases, e.text, **values)
    topic = _heading_topic(values["heading"])
    phrases = _nps(e.text, 3, exclude=[values["heading"]])
    pool = _SECTION_QUOTED + (_SECTION_TOPIC if topic else [])
    template = pool[_pick(e.id, seed, len(pool))]
    return _with_phrases(template, phrases, e.text, topic=topic or "", **values)


def _code_instruction(e: Extract, seed: int) -> str:
    repo = f'my repository "{_quotable(e.title)}"' if e.title.strip() else "my repository"
    pick = functools.partial(_pick, e.id, seed)
    if e.kind == "readme":  # heading: a README section, or the file's path for its introduction
        values = {"path": e.heading, "repo": repo, "heading": _quotable(e.heading)}
        is_intro = bool(re.fullmatch(r"[\w./-]+\.(?:md|markdown|rst|txt)", e.heading, re.I))
        phrases = _nps(e.text, 3, exclude=[] if is_intro else [e.heading])
        templates = _README_INTRO if is_intro else _README_SECTION
        return _with_phrases(templates[pick(len(templates))], phrases, e.text, **values)

    path, _, name = e.heading.partition(":")
    name = name or PurePosixPath(path).name
    values = {"path": path, "name": name, "lang": _lang(e), "repo": repo, "heading": e.heading}
    if e.kind in ("function", "class"):
        desc = _doc_desc(e.docstring, name) if e.docstring.strip() else None
        words = tuple(_name_words(name))
        candidates: list[str] = []
        if desc is not None:
            if e.kind == "class":
                templates = _CLASS[desc.mode]
            elif desc.mode == "noun":
                templates = _FUNCTION_NOUN
            elif desc.mode == "passive":
                templates = _FUNCTION_PASSIVE
            else:
                templates = _FUNCTION_VERB
            for clause in _shorter(desc.clause):
                n = len(clause.split())
                base = " ".join(desc.base.split()[:n]).rstrip(",;:-—( ") if desc.base else clause
                for t in _rotate(templates, pick(len(templates))):
                    candidates.append(t.format(clause=clause, base=base, **values))
        elif e.kind == "function" and words and words[0] == "test" and len(words) > 1:
            clause = _test_clause(words[1:], _called_names(e.text))
            candidates.extend(t.format(clause=clause, **values) for t in _rotate(_TEST, pick(len(_TEST))))
        elif e.kind == "function" and (clause := _name_verb_clause(words)):
            templates = [t for t in _FUNCTION_VERB if "{base}" not in t]
            candidates.extend(
                t.format(clause=clause, **values) for t in _rotate(templates, pick(len(templates)))
            )
        elif e.kind == "class" and (fields := _class_fields(e.text)):
            templates = _CLASS["fields"]
            candidates.append(
                templates[pick(len(templates))].format(
                    fields=join_phrases([f"`{f}`" for f in fields]), **values
                )
            )
        bare = _CLASS["bare"] if e.kind == "class" else _FUNCTION_BARE
        candidates.append(bare[pick(len(bare))].format(**values))
        return _first_valid(candidates, e.text) or _finish(candidates[-1])

    # whole files
    candidates = []
    if e.code_language == "python":
        docstring, exposed = _module_summary(e.text)
        module = PurePosixPath(path).parent.name or PurePosixPath(path).stem
        desc = _doc_desc(docstring, module) if docstring else None
        if desc is not None:
            for clause in _shorter(desc.clause):
                candidates.append(_FILE_DOC[desc.mode].format(clause=clause, **values))
        if exposed:
            candidates.append(
                _FILE_EXPORTS.format(names=join_phrases([f"`{n}`" for n in exposed[:3]]), **values)
            )
    if sections := _config_sections(e):
        unit = "tables" if e.code_language == "toml" else "keys"
        candidates.append(
            _FILE_CONFIG.format(sections=join_phrases([f"`{s}`" for s in sections]), unit=unit, **values)
        )
    if candidates and (found := _first_valid(candidates, e.text)):
        return found
    phrases = _nps(_comments(e), 3) if e.code_language else []
    return _with_phrases(_FILE_PHRASES, phrases, e.text, **values)


def offline_instruction(e: Extract, seed: int = 0) -> str:
    """The request an extract answers, from its own structure (no LLM, deterministic)."""
    if e.category == Category.REPOSITORIES:
        return _code_instruction(e, seed)
    return _prose_instruction(e, seed)


def offline_instructions(extracts: Sequence[Extract], seed: int = 0) -> list[str]:
    """`offline_instruction` for many extracts, parsing their prose in one `nlp.pipe` batch."""
    prime(
        (e.text for e in extracts if e.category != Category.REPOSITORIES or e.kind == "readme"),
        headings=[e.heading.strip() for e in extracts if e.category == Category.ARTICLES],
    )
    return [offline_instruction(e, seed) for e in extracts]
