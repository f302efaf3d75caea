"""Self-query: the search filters a question asks for ("on LinkedIn", "in your articles",
"since March 2023", "in chunkwise").

Two extractors with one output (`SearchFilters`): `llm_filters` asks the configured LLM for a
JSON object and validates it; `rule_filters` is the offline default and the fallback when the
LLM's answer is unusable.

Precision over recall. A wrong filter hides the very chunks that answer the question, a missed
one only leaves a few off-topic candidates for the reranker, so the rules fire only on explicit
phrasings (and the pipeline falls back to an unfiltered search when a filter leaves nothing):

- Platform (LinkedIn, Medium, Substack, GitHub): the name is where the author's writing was
  published: "your LinkedIn", a kind of writing next to it ("LinkedIn posts", "Medium
  article", "posts on LinkedIn", "GitHub repos"), or "on/in/from <platform>" in a question
  about what the author wrote ("what did you say on LinkedIn about ..."; a writing verb after
  "you"). A possessive or an API/company reading ("LinkedIn's API", "the Medium API"), or the
  platform as the topic ("what do you think about posting on LinkedIn?") does not count.
- Category ("articles", "posts", "code", "repositories", "repo"): only as the author's own
  writing: "your articles", "in the posts", "from your code", "articles you wrote". "write code"
  or "blog posts in general" do not count. "blog post" means an article. When a platform is
  named, its own category is implied and no category filter is added (a "Substack post" is in
  the category articles).
- Dates: "in/during 2024", "in March 2024", "since/after/from [March] 2023", "before/until/prior
  to [March] 2022", "between 2022 and 2023", "last year", "this year", "in the last/past N
  days/weeks/months/years" (N as digits or a word, "the last month" = 1). Bounds are inclusive
  dates; "before 2022" ends on 2021-12-31, "after March 2023" starts on 2023-04-01.
- Repositories: a known repository name (from the index) appearing as whole words, compared
  without case and treating "-", "_", "." and spaces alike. A one-word name that is also a
  common word ("tools", "notes") only counts next to "repo", "repository", "project", "library"
  or "package".
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from twin_assets.domain.documents import Category, Platform
from twin_assets.domain.generation import TextGenerator
from twin_assets.serving.memory_index import normalize_repository
from twin_assets.serving.types import SearchFilters

_PLATFORM_NAMES: dict[str, Platform] = {
    "linkedin": Platform.LINKEDIN,
    "medium": Platform.MEDIUM,
    "substack": Platform.SUBSTACK,
    "github": Platform.GITHUB,
}
_WRITING = (
    r"(?:posts?|articles?|stor(?:y|ies)|essays?|newsletters?|blogs?|feed|profile|writing|"
    r"pieces?|updates?|repos?|repositor(?:y|ies)|projects?|code)"
)
_PLACE = r"(?:on|in|from|at|across|via|over\s+on)\s+(?:your\s+|the\s+)?"
_YOU_SAID = re.compile(
    r"\byou(?:'ve|’ve)?\s+(?:(?:ever|once|have|had|already|recently|just|also|previously|first|last)\s+){0,2}"
    r"(?:wrote|write|written|writing|post|posted|posting|say|said|"
    r"share|shared|sharing|publish|published|mention|mentioned|discuss|discussed|argue|argued|"
    r"claim|claimed|explain|explained|talk|talked|recommend|recommended|note|noted|cover|covered)\b",
    re.I,
)
_NOT_ABOUT_PLATFORM = r"(?!\s*(?:'s|’s|\s+api\b|\s+apis\b|\s+sdk\b|\s+algorithm|\s+inc\b|\s+corp))"

_CATEGORY_WORDS: list[tuple[str, Category]] = [
    (r"blog\s+posts?|articles?|essays?|newsletters?|blog", Category.ARTICLES),
    (r"(?<!blog\s)posts?", Category.POSTS),
    (r"code|code\s*base|codebases?|repos?|repositor(?:y|ies)", Category.REPOSITORIES),
]
_CATEGORY_CUE = (
    r"(?:\b(?:your|those|these)\s+|\b(?:in|from|across|among|through)\s+(?:your|the|those|these)\s+)"
    r"(?:[\w-]+\s+){0,2}?"
)
_YOU_WROTE = r"\s+(?:that\s+|which\s+)?you\s+(?:wrote|write|published|posted|shared|made|built)"

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m} | {
    m.lower(): i for i, m in enumerate(calendar.month_abbr) if m
}
_MONTH = (
    r"(january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"
)
_YEAR = r"((?:19|20)\d{2})(?![\d-])"
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a": 1, "couple of": 2, "few": 3,
}  # fmt: skip
_GENERIC_REPO_WORDS = frozenset(
    [
        "app",
        "api",
        "apps",
        "blog",
        "code",
        "core",
        "data",
        "demo",
        "docs",
        "examples",
        "lib",
        "notes",
        "project",
        "scripts",
        "site",
        "test",
        "tests",
        "tools",
        "utils",
        "web",
        "website",
        "sample",
        "samples",
        "config",
        "dotfiles",
    ]
)
_REPO_CUE = re.compile(r"\b(?:repo|repos|repository|repositories|project|library|package)\b", re.I)


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _add_months(day: date, months: int) -> date:
    total = day.year * 12 + day.month - 1 + months
    year, month = divmod(total, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _platforms(text: str) -> list[Platform]:
    found: list[Platform] = []
    about_writing = _YOU_SAID.search(text) is not None
    for name, platform in _PLATFORM_NAMES.items():
        yours = re.search(rf"\byour\s+{name}\b{_NOT_ABOUT_PLATFORM}", text, re.I)
        noun_after = re.search(rf"\b{name}\s+{_WRITING}\b", text, re.I)
        noun_before = re.search(rf"\b{_WRITING}\s+{_PLACE}{name}\b{_NOT_ABOUT_PLATFORM}", text, re.I)
        place = about_writing and re.search(rf"\b{_PLACE}{name}\b{_NOT_ABOUT_PLATFORM}", text, re.I)
        if (yours or noun_after or noun_before or place) and platform not in found:
            found.append(platform)
    return found


def _categories(text: str) -> list[Category]:
    found: list[Category] = []
    for words, category in _CATEGORY_WORDS:
        owned = re.search(rf"{_CATEGORY_CUE}(?:{words})\b", text, re.I)
        wrote = re.search(rf"\b(?:{words}){_YOU_WROTE}\b", text, re.I)
        if (owned or wrote) and category not in found:
            found.append(category)
    return found


def _number(word: str) -> int | None:
    word = word.lower().strip()
    if word.isdigit():
        return int(word)
    return _NUMBER_WORDS.get(word)


def _dates(text: str, today: date) -> tuple[date | None, date | None]:
    """(published_after, published_before), inclusive; the first phrasing that matches wins."""
    t = text.lower()
    m = re.search(rf"\bbetween\s+(?:{_MONTH}\s+)?{_YEAR}\s+and\s+(?:{_MONTH}\s+)?{_YEAR}", t)
    if m:
        m1, y1, m2, y2 = m.groups()
        start = date(int(y1), _MONTHS[m1.rstrip(".")] if m1 else 1, 1)
        end_year = int(y2)
        end = _month_end(end_year, _MONTHS[m2.rstrip(".")]) if m2 else date(end_year, 12, 31)
        return (start, end) if start <= end else (None, None)
    m = re.search(
        r"\b(?:in|over|during|within)\s+the\s+(?:last|past|previous)\s+"
        r"(?:(\d{1,3}|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|couple of|few)\s+)?"
        r"(days?|weeks?|months?|years?)\b",
        t,
    )
    if m:
        n = _number(m.group(1)) if m.group(1) else 1
        if n is None or n < 1:
            return None, None
        unit = m.group(2).rstrip("s")
        if unit == "day":
            start = today - timedelta(days=n)
        elif unit == "week":
            start = today - timedelta(weeks=n)
        elif unit == "month":
            start = _add_months(today, -n)
        else:
            start = _add_months(today, -12 * n)
        return start, None
    if re.search(r"\blast\s+year\b", t) and not re.search(r"\bsince\s+last\s+year\b", t):
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    if re.search(r"\bsince\s+last\s+year\b", t):
        return date(today.year - 1, 1, 1), None
    if re.search(r"\bthis\s+year\b", t):
        return date(today.year, 1, 1), None
    m = re.search(rf"\b(since|after|from|starting(?:\s+in)?)\s+(?:{_MONTH}\s+)?{_YEAR}", t)
    if m:
        word, month, year = m.group(1), m.group(2), int(m.group(3))
        if word == "after":
            start = (
                _add_months(date(year, _MONTHS[month.rstrip(".")], 1), 1) if month else date(year + 1, 1, 1)
            )
        else:
            start = date(year, _MONTHS[month.rstrip(".")] if month else 1, 1)
        return start, None
    m = re.search(rf"\b(before|until|till|prior\s+to|up\s+to)\s+(?:{_MONTH}\s+)?{_YEAR}", t)
    if m:
        word, month, year = m.group(1), m.group(2), int(m.group(3))
        if word in ("until", "till", "up to"):  # inclusive of the named period
            end = _month_end(year, _MONTHS[month.rstrip(".")]) if month else date(year, 12, 31)
        else:
            end = date(year, _MONTHS[month.rstrip(".")] if month else 1, 1) - timedelta(days=1)
        return None, end
    m = re.search(rf"\b(?:in|during|throughout|around)\s+(?:{_MONTH}\s+(?:of\s+)?)?{_YEAR}", t)
    if m:
        month, year = m.group(1), int(m.group(2))
        if month:
            n = _MONTHS[month.rstrip(".")]
            return date(year, n, 1), _month_end(year, n)
        return date(year, 1, 1), date(year, 12, 31)
    return None, None


def _repositories(text: str, repositories: Sequence[str]) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    # every run of 1-4 consecutive words, joined: "LLM twin", "llm_twin", "llm-twin" -> "llmtwin"
    joined = {"".join(words[i : i + n]) for n in range(1, 5) for i in range(len(words) - n + 1)}
    found: list[str] = []
    for name in repositories:
        key = normalize_repository(name)
        compact = re.sub(r"[^a-z0-9]", "", key)
        if not compact or compact not in joined:
            continue
        single_word = "-" not in key
        if (
            single_word
            and (len(compact) < 4 or compact in _GENERIC_REPO_WORDS)
            and not _REPO_CUE.search(text)
        ):
            continue
        if name not in found:
            found.append(name)
    return found


def rule_filters(question: str, repositories: Sequence[str], today: date) -> SearchFilters:
    """Filters the question explicitly asks for (see the module docstring for the rules)."""
    platforms = _platforms(question)
    repos = _repositories(question, repositories)
    categories = [] if platforms or repos else _categories(question)
    after, before = _dates(question, today)
    return SearchFilters(
        categories=categories or None,
        platforms=platforms or None,
        published_after=after,
        published_before=before,
        repositories=repos or None,
    )


# -- the LLM extractor ------------------------------------------------------------------------


class _LlmFilters(BaseModel):
    """What the LLM must answer; unknown keys are ignored, wrong types make the answer invalid."""

    model_config = ConfigDict(extra="ignore")

    reason: str
    platforms: list[Platform] | None = None
    categories: list[Category] | None = None
    published_after: date | None = None
    published_before: date | None = None
    repositories: list[str] | None = None

    @field_validator("platforms", "categories", "repositories", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        if value in (None, "", "null", "none"):
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [v.lower() if isinstance(v, str) else v for v in value] if value else None
        return value

    @field_validator("published_after", "published_before", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> Any:
        return None if value in ("", "null", "none") else value


def _selfquery_messages(question: str, repositories: Sequence[str], today: date) -> list[dict[str, str]]:
    repos = ", ".join(repositories) if repositories else "(none)"
    system = (
        "You turn a question asked to an author's digital twin into search filters over the "
        "author's own writing. Answer with one JSON object and nothing else, with the keys:\n"
        '"reason": one short sentence saying which words of the question ask for each filter, '
        'or "no filter";\n'
        '"platforms": null or a list of "linkedin", "medium", "substack", "github", "web";\n'
        '"categories": null or a list of "articles", "posts", "repositories";\n'
        '"published_after": null or "YYYY-MM-DD" (inclusive);\n'
        '"published_before": null or "YYYY-MM-DD" (inclusive);\n'
        f'"repositories": null or a list of names taken only from: {repos}.\n'
        "Set a filter ONLY when the question explicitly restricts where or when the writing was "
        'published ("on LinkedIn", "in your articles", "since March 2023"). A question that '
        'merely mentions a platform as its topic ("LinkedIn\'s API") gets no platform filter. '
        f"Today is {today.isoformat()}."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def _parse_object(text: str) -> dict[str, Any] | None:
    import json

    match = re.search(r"\{.*\}", text, re.S)
    if not match:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def llm_filters(
    question: str, generator: TextGenerator, repositories: Sequence[str], today: date
) -> SearchFilters | None:
    """Filters extracted by the LLM (JSON, validated), or None when there is no LLM or its
    answer is unusable (the caller then uses `rule_filters`). Repository names it invents are
    dropped; contradictory dates (after > before, or after today) make the answer invalid."""
    if not generator.uses_llm or not question.strip():
        return None
    try:
        gen = generator.generate(
            _selfquery_messages(question, repositories, today),
            max_tokens=200,
            temperature=0.0,
            json_keys=["reason"],
        )
    except Exception:  # the protocol says None on failure; a broken backend must not sink a request
        return None
    if gen is None:
        return None
    data = gen.data if gen.data is not None else _parse_object(gen.text)
    if data is None:
        return None
    try:
        parsed = _LlmFilters.model_validate(data)
    except ValidationError:
        return None
    if (
        parsed.published_after
        and parsed.published_before
        and parsed.published_after > parsed.published_before
    ):
        return None
    if parsed.published_after and parsed.published_after > today:
        return None
    known = {normalize_repository(r): r for r in repositories}
    repos = [
        known[normalize_repository(r)] for r in parsed.repositories or [] if normalize_repository(r) in known
    ]
    return SearchFilters(
        categories=list(dict.fromkeys(parsed.categories)) if parsed.categories else None,
        platforms=list(dict.fromkeys(parsed.platforms)) if parsed.platforms else None,
        published_after=parsed.published_after,
        published_before=parsed.published_before,
        repositories=list(dict.fromkeys(repos)) or None,
    )
