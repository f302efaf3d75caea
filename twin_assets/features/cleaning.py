"""Cleaning: raw crawled documents -> the author's first snapshot (`CleanedDocument`).

Cleaning is category-aware because the three kinds of writing break in different ways:

- articles keep their structure ("#" headings, paragraphs, lists, fenced code) because the
  chunker and the dataset builders cut along it;
- posts keep their line breaks (on LinkedIn a line break *is* the formatting) while the clutter
  pasted into them goes: "mathematical bold" letters, emoji bullets, `hashtag#` artefacts,
  tracking parameters and `lnkd.in` redirectors;
- code is never touched: every space and newline is meaningful, so repository files are kept
  byte-for-byte and only whole files that are not the author's writing (lock files, minified
  or generated files, licences, binaries) are dropped, as are credential-like files, dot-files
  and SVG (`text.repo_files.hygiene_reason`); a repository's cleaned `content` is empty (its
  raw content only renders the files), notebooks are their code and Markdown cells.

Everything here is a pure function of its input, so the same raw document always cleans to the
same text and hash; `CLEANER_VERSION` is bumped whenever the rules change so the asset re-cleans.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from langdetect import DetectorFactory, LangDetectException, detect_langs

from twin_assets.domain.documents import Category, RawDocument, RepoFile, sha256_text
from twin_assets.domain.features import CleanedDocument
from twin_assets.text.markdown import CLEANING_MARKDOWN, FENCE_RE, HEADING_RE, blocks_to_markdown
from twin_assets.text.notebooks import (
    NOTEBOOK_SUFFIX,
    MalformedNotebook,
    looks_like_notebook_json,
    notebook_to_text,
)
from twin_assets.text.repo_files import (
    CLEANER_SKIP_DIRS,
    CLEANER_SKIP_FILE_NAMES,
    CLEANER_SKIP_SUFFIXES,
    hygiene_reason,
)
from twin_assets.text.tracking import TRACKING_PARAM_RE

CLEANER_VERSION = "3"  # 2: table rows and quote lines kept one per line
# 3: repositories are their files only (no prose copy); credential-like files, dot-files and SVG
#    dropped; notebooks read as their cells

# -- unicode -----------------------------------------------------------------------------------

# Emoji and pictographs (incl. flags, skin tones), dingbats/misc symbols, stars and arrows used as
# decoration, plus the invisible joiners and selectors that glue emoji sequences together.
_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u23e9-\u23fa\ufe0e\ufe0f\u20e3\u200d"
_EMOJI_RE = re.compile(f"[{_EMOJI}]+")
_LEADING_EMOJI_RE = re.compile(rf"^\s*[{_EMOJI}]+\s*")
_INVISIBLE_RE = re.compile("[\u200b\u200c\u2060\ufeff\u00ad]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


def normalize_unicode(text: str) -> str:
    """NFKC folds compatibility characters to their plain form.

    That is what turns the "𝗯𝗼𝗹𝗱" / "𝘪𝘵𝘢𝘭𝘪𝘤" letters people paste into LinkedIn into ASCII, and
    full-width "＃" / "＠" into "#" / "@", ligatures into letters and NBSP into a space.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFKC", text)
    return _INVISIBLE_RE.sub("", text)


def strip_emoji(text: str) -> str:
    """Remove emoji clutter line by line; a run of emoji-led lines becomes a "- " list."""
    lines = text.split("\n")
    led = [bool(_LEADING_EMOJI_RE.match(line)) and bool(_EMOJI_RE.sub("", line).strip()) for line in lines]
    out = []
    for i, line in enumerate(lines):
        in_list = led[i] and ((i > 0 and led[i - 1]) or (i + 1 < len(lines) and led[i + 1]))
        if led[i]:
            line = _LEADING_EMOJI_RE.sub("- " if in_list else "", line, count=1)
        line = _EMOJI_RE.sub(" ", line)
        out.append(_SPACES_RE.sub(" ", line).strip())
    return "\n".join(out)


# -- links -------------------------------------------------------------------------------------

_URL_RE = re.compile(r"https?://[^\s<>()\[\]\"'`]+", re.IGNORECASE)
# LinkedIn's redirector hides the target and carries no meaning for the twin: dropped outright.
_REDIRECTOR_HOSTS = ("lnkd.in",)


def clean_url(url: str) -> str:
    """Return the URL without tracking parameters; "" for a pure redirector such as lnkd.in."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    host = (parts.hostname or "").lower()
    if any(host == h or host.endswith("." + h) for h in _REDIRECTOR_HOSTS):
        return ""
    medium = host == "medium.com" or host.endswith(".medium.com")
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not TRACKING_PARAM_RE.match(k) and not (medium and k.lower() == "source")
    ]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, doseq=True), parts.fragment))


def clean_urls(text: str) -> str:
    def repl(match: re.Match) -> str:
        url = match.group(0)
        trail = ""
        while url and url[-1] in ".,;:!?":
            trail = url[-1] + trail
            url = url[:-1]
        return clean_url(url) + trail

    return _URL_RE.sub(repl, text)


# -- boilerplate -------------------------------------------------------------------------------

_BOILERPLATE_RES = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^(share|share this( post| article| story)?|follow|following|subscribe( now)?|sign (up|in)|"
        r"log ?in|listen|clap|claps|like|comment|repost|send|reply|copy link|open in app|"
        r"read more|see more|…\s*see more|\.\.\.\s*see more|…\s*more|see translation|"
        r"get the (medium )?app|top highlight|member-only story|back to top|skip to (main )?content)$",
        r"^\d+\s*min(ute)?s?\s+read$",
        r"^[\d.,]+[km]?\s*(claps?|likes?|comments?|reposts?|followers?|views?|reactions?|responses?)$",
        r"^(originally published (at|on|in)|thanks for reading|become a (medium )?member|"
        r"sign up (to|for)|subscribe to|this post is for (paid )?subscribers|we use cookies|"
        r"accept (all )?cookies|privacy policy|terms of (service|use)|all rights reserved|©|"
        r"(photo|image|cover image) (by|credit|source)|written by |published in )",
    )
]
_SEE_MORE_TAIL_RE = re.compile(r"\s*(…|\.\.\.)\s*see more\s*$", re.IGNORECASE)


def is_boilerplate(line: str) -> bool:
    """Lines that extraction leaves around the author's text (UI labels, footers, counters)."""
    stripped = line.strip()
    if not stripped or len(stripped) > 200:
        return False
    return any(r.match(stripped) for r in _BOILERPLATE_RES)


# -- text passes -------------------------------------------------------------------------------

_HASHTAG_ARTEFACT_RE = re.compile(r"\bhashtag\s*#\s*(?=\w)", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@])@\s+(?=[A-Za-z])")
_HASHTAG_TOKEN_RE = re.compile(r"#\w+")


def _clean_prose_line(line: str) -> str:
    line = clean_urls(line)
    return _SPACES_RE.sub(" ", line).strip()


def normalize_tags(text: str) -> str:
    """`hashtag#AI` (LinkedIn copy artefact) -> `#AI`; `@ Name` -> `@Name`."""
    text = _HASHTAG_ARTEFACT_RE.sub("#", text)
    return _MENTION_RE.sub("@", text)


def _collapse_blank_lines(lines: list[str]) -> str:
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def clean_post(text: str) -> str:
    """Posts keep their line breaks; a trailing block of hashtags becomes one de-duplicated line."""
    text = normalize_tags(strip_emoji(normalize_unicode(text)))
    lines = []
    for line in text.split("\n"):
        line = _SEE_MORE_TAIL_RE.sub("", line)
        if is_boilerplate(line):
            continue
        lines.append(_clean_prose_line(line))
    # hashtag-only lines at the end (how LinkedIn posts usually finish)
    tags: list[str] = []
    while lines and (not lines[-1] or _HASHTAG_TOKEN_RE.sub("", lines[-1]).strip() == ""):
        tags = _HASHTAG_TOKEN_RE.findall(lines.pop()) + tags
    if tags:
        seen: set[str] = set()
        unique = [t for t in tags if not (t.lower() in seen or seen.add(t.lower()))]
        lines += ["", " ".join(unique)]
    return _collapse_blank_lines(lines)


_LIST_RE = re.compile(r"^\s*([-*+•]|\d+[.)])\s+")
# A Markdown table row ("| a | b |") and a quote line ("> text"): each stays a line of its own.
_TABLE_ROW_RE = re.compile(r"^\s*\|.*\|\s*$")
_QUOTE_LINE_RE = re.compile(r"^\s*>")


def _own_line(line: str) -> bool:
    return bool(
        _LIST_RE.match(line)
        or HEADING_RE.match(line)
        or _TABLE_ROW_RE.match(line)
        or _QUOTE_LINE_RE.match(line)
    )


def _clean_paragraph(lines: list[str]) -> list[str]:
    """One paragraph: list items, table rows and quote lines stay on their own lines, other
    lines are joined with spaces."""
    out: list[str] = []
    for line in lines:
        if not _TABLE_ROW_RE.match(line) and is_boilerplate(line):
            continue
        line = _clean_prose_line(strip_emoji(line))
        if not line:
            continue
        if not out or _own_line(line) or HEADING_RE.match(out[-1]) or _TABLE_ROW_RE.match(out[-1]):
            out.append(
                _LIST_RE.sub(
                    lambda m: "- " if not m.group(1)[0].isdigit() else m.group(0).strip() + " ", line, count=1
                )
            )
        else:
            out[-1] = f"{out[-1]} {line}"
    return out


def clean_markdown(text: str) -> str:
    """Article text (markdown-ish): headings and paragraphs kept, fenced code kept verbatim."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks: list[str] = []  # joined with one blank line; code blocks keep their own blank lines
    para: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if para:
            cleaned = _clean_paragraph([normalize_tags(normalize_unicode(line)) for line in para])
            if cleaned:
                blocks.append("\n".join(cleaned))
            para.clear()

    for line in text.split("\n"):
        if code is not None:
            code.append(line)
            if FENCE_RE.match(line):
                blocks.append("\n".join(code))
                code = None
            continue
        if FENCE_RE.match(line):
            flush()
            code = [line]
        elif HEADING_RE.match(line.strip()):
            flush()
            para.append(line.strip())
            flush()
        elif not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    if code is not None:  # an unterminated fence: keep the code, close the fence
        blocks.append("\n".join([*code, "```"]))
    return "\n\n".join(blocks)


# -- code --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileVerdict:
    keep: bool
    reason: str = ""


def code_file_verdict(file: RepoFile) -> FileVerdict:
    """Which repository files are the author's writing. Kept files are never modified."""
    parts = [p.lower() for p in file.path.replace("\\", "/").split("/")]
    name = parts[-1]
    if reason := hygiene_reason(file.path, file.content):
        return FileVerdict(False, reason)
    if any(p in CLEANER_SKIP_DIRS for p in parts[:-1]):
        return FileVerdict(False, "vendored or generated directory")
    if name in CLEANER_SKIP_FILE_NAMES or name.endswith(CLEANER_SKIP_SUFFIXES):
        return FileVerdict(False, "lock, licence or generated file")
    if "\x00" in file.content:
        return FileVerdict(False, "binary")
    if not file.content.strip():
        return FileVerdict(False, "empty")
    lines = file.content.split("\n")
    if len(file.content) > 2000 and len(file.content) / max(len(lines), 1) > 400:
        return FileVerdict(False, "minified")
    return FileVerdict(True)


def notebook_as_cells(file: RepoFile) -> RepoFile | None:
    """A notebook still in its JSON form (crawled before notebooks were read) as its cells' text
    (the crawler's own rendering, `text.notebooks`); None when it is malformed or has no cells.
    The one exception to "kept files are never modified": outputs are not the author's writing."""
    if not file.path.lower().endswith(NOTEBOOK_SUFFIX) or not looks_like_notebook_json(file.content):
        return file
    try:
        text, language = notebook_to_text(file.content)
    except MalformedNotebook:
        return None
    if not text.strip():
        return None
    return file.model_copy(update={"content": text, "language": language, "size": len(text.encode())})


_RENDERED_FILE_RE = re.compile(r"^==> (.+?) <==\n", re.MULTILINE)


def is_rendering(content: str) -> bool:
    """The crawler's `==> path <==` rendering of a repository's files (`crawling.github`)."""
    return _RENDERED_FILE_RE.match(content) is not None


def files_from_rendering(content: str) -> list[RepoFile]:
    """The files of a repository document that carries only the crawler's `==> path <==`
    rendering (no `files`): read back as files, so the code is never cleaned as prose."""
    marks = list(_RENDERED_FILE_RE.finditer(content))
    if not marks or content[: marks[0].start()].strip():
        return []
    out = []
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        body = content[m.end() : nxt.start() if nxt else len(content)]
        body = body[:-1] if nxt is not None and body.endswith("\n\n") else body  # the joining newline
        out.append(RepoFile(path=m.group(1), content=body, size=len(body.encode())))
    return out


# -- language ----------------------------------------------------------------------------------

DetectorFactory.seed = 0  # langdetect is randomised; a fixed seed makes it deterministic
_FENCED_BLOCK_RE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def detect_language(text: str) -> str:
    """ISO 639-1 code of the prose (code blocks and URLs ignored), or "unknown" if too little."""
    prose = _URL_RE.sub(" ", _FENCED_BLOCK_RE.sub(" ", text))
    prose = _HASHTAG_TOKEN_RE.sub(" ", prose)
    if sum(ch.isalpha() for ch in prose) < 20:
        return "unknown"
    DetectorFactory.seed = 0
    try:
        best = detect_langs(prose[:5000])[0]
    except LangDetectException:
        return "unknown"
    return best.lang if best.prob >= 0.5 else "unknown"


# -- documents ---------------------------------------------------------------------------------


class EmptyAfterCleaning(ValueError):
    """The document had nothing of the author's left once boilerplate was removed."""


def cleaned_hash(content: str, files: list[RepoFile]) -> str:
    return sha256_text(content, *[f"{f.path}\x00{f.content}" for f in files])


def clean_document(doc: RawDocument) -> CleanedDocument:
    """Clean one raw document according to its category. Raises `EmptyAfterCleaning`."""
    files: list[RepoFile] = []
    title = " ".join(normalize_unicode(doc.title).split()) if doc.title else None
    if doc.category == Category.POSTS:
        content = clean_post(doc.content)
    elif doc.category == Category.ARTICLES:
        # Rebuilt from the structural blocks extraction kept (better than flat text).
        source = blocks_to_markdown(doc.blocks, CLEANING_MARKDOWN) if doc.blocks else doc.content
        content = clean_markdown(source)
    else:
        # A repository is its files. The crawler's raw `content` renders those same files under
        # `==> path <==` headers: cleaning it as Markdown would mangle the code and count it
        # twice, so it is dropped (or read back as the files when a document carries no files).
        # Any other content (a description) is prose.
        rendered = is_rendering(doc.content)
        source_files = doc.files or (files_from_rendering(doc.content) if rendered else [])
        content = "" if rendered or not doc.content.strip() else clean_markdown(doc.content)
        files = [nb for f in source_files if (nb := notebook_as_cells(f)) is not None]
        files = [f for f in files if code_file_verdict(f).keep]
        files = sorted(files, key=lambda f: f.path)
    if not content.strip() and not files:
        raise EmptyAfterCleaning(f"{doc.link}: nothing left after cleaning")
    language_source = content
    if doc.category == Category.REPOSITORIES and not content.strip():
        language_source = "\n".join(
            f.content for f in files if (f.language or "").lower() in {"markdown", "md", "text"}
        )
    return CleanedDocument(
        id=doc.id,
        author_id=doc.author_id,
        platform=doc.platform,
        category=doc.category,
        link=doc.link,
        title=title,
        content=content,
        files=files,
        language=detect_language(language_source),
        raw_content_hash=doc.content_hash,
        content_hash=cleaned_hash(content, files),
        cleaner_version=CLEANER_VERSION,
    )
