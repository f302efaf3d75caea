"""Importers for the author's own data exports (no crawling, no login walls).

- LinkedIn: the "Get a copy of your data" zip (or its unpacked directory) holds `Shares.csv`
  (Date, ShareLink, ShareCommentary, SharedUrl, MediaUrl, Visibility); one post per row with
  text. A simpler `posts.csv` (date/link/text columns, as third-party exporters write it) is
  read the same way.
- Medium: the export archive (zip or directory) holds `posts/*.html`, one `article.h-entry`
  per post with `h1.p-name`, `section[data-field=body].e-content`, `time.dt-published` and
  `a.p-canonical`. Drafts (`draft_*.html`, no canonical link) are skipped.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from twin_assets.crawling.base import BaseCrawler, CrawlContext, CrawlTarget
from twin_assets.crawling.dates import parse_datetime
from twin_assets.crawling.errors import ExportError, NoContent
from twin_assets.crawling.extract import extract_article
from twin_assets.crawling.safety import check_export_path
from twin_assets.crawling.soup import attr_str, soup_of
from twin_assets.domain.documents import AuthorLink, Block, Platform, RawDocument, SourceKind

MAX_EXPORT_MEMBER_BYTES = 64 * 1024 * 1024  # refuse zip bombs
_TITLE_CHARS = 90

_TEXT_COLUMNS = ("sharecommentary", "commentary", "text", "content", "post", "body")
_LINK_COLUMNS = ("sharelink", "link", "url", "post_url", "posturl", "permalink")
_DATE_COLUMNS = ("date", "published_at", "created_at", "posted_at", "time")


def _read_export_files(path: Path, wanted: Callable[[str], bool]) -> list[tuple[str, bytes]]:
    """(name, bytes) of the files in a zip or a directory tree for which `wanted(name)` holds."""
    out: list[tuple[str, bytes]] = []
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.is_dir() or not wanted(info.filename):
                        continue
                    if info.file_size > MAX_EXPORT_MEMBER_BYTES:
                        raise ExportError(f"{info.filename} in {path} is too large ({info.file_size} bytes)")
                    out.append((info.filename, zf.read(info)))
        except zipfile.BadZipFile as exc:
            raise ExportError(f"{path} is not a readable zip: {exc}") from exc
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = file.relative_to(path).as_posix()
            if wanted(rel):
                if file.stat().st_size > MAX_EXPORT_MEMBER_BYTES:
                    raise ExportError(f"{file} is too large")
                out.append((rel, file.read_bytes()))
    elif path.is_file() and wanted(path.name):
        out.append((path.name, path.read_bytes()))
    else:
        raise ExportError(f"{path} is neither a zip, a directory nor an export file")
    return sorted(out)


def _pick(row: dict[str, str], names: tuple[str, ...]) -> str:
    lowered = {(k or "").strip().lower(): v for k, v in row.items()}
    for name in names:
        if (value := lowered.get(name)) and value.strip():
            return value
    return ""


def _paragraph_blocks(text: str) -> list[Block]:
    return [Block(kind="paragraph", text=p.strip("\n")) for p in text.split("\n\n") if p.strip()]


def _first_line_title(text: str) -> str | None:
    line = text.strip().split("\n", 1)[0].strip()
    if not line:
        return None
    return line if len(line) <= _TITLE_CHARS else line[: _TITLE_CHARS - 1] + "…"


class LinkedInExportImporter(BaseCrawler):
    platform = Platform.LINKEDIN
    source = SourceKind.EXPORT

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        path = check_export_path(link.url, ctx.settings)
        files = _read_export_files(
            path, lambda n: PurePosixPath(n).name.lower() in ("shares.csv", "posts.csv")
        )
        if not files:
            raise ExportError(f"no Shares.csv or posts.csv in {path}")
        targets: list[CrawlTarget] = []
        for name, data in files:
            try:
                reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
                rows = list(reader)
            except (UnicodeDecodeError, csv.Error) as exc:
                raise ExportError(f"{name} in {path} is not a readable CSV: {exc}") from exc
            for i, row in enumerate(rows):
                text = _pick(row, _TEXT_COLUMNS)
                if not text.strip():
                    continue  # a reshare without commentary: nothing the author wrote
                url = _pick(row, _LINK_COLUMNS).strip() or f"{path.as_uri()}#{name}:{i + 1}"
                targets.append(CrawlTarget(url=url, link=link, payload=row))
        if not targets:
            raise NoContent(f"{path} holds no posts with text")
        return targets

    def crawl(self, target: CrawlTarget, ctx: CrawlContext) -> RawDocument:
        row: dict[str, str] = target.payload
        text = _pick(row, _TEXT_COLUMNS).replace("\r\n", "\n").replace("\r", "\n").strip()
        return self.make_document(
            ctx,
            target,
            title=_first_line_title(text),
            content=text + "\n",
            blocks=_paragraph_blocks(text),
            published_at=parse_datetime(_pick(row, _DATE_COLUMNS)),
        )


class MediumExportImporter(BaseCrawler):
    platform = Platform.MEDIUM
    source = SourceKind.EXPORT

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        path = check_export_path(link.url, ctx.settings)

        def wanted(name: str) -> bool:
            p = PurePosixPath(name)
            return (
                p.suffix.lower() == ".html"
                and not p.name.startswith("draft_")
                and ("posts" in p.parts[:-1] or len(p.parts) == 1)
            )

        targets: list[CrawlTarget] = []
        for name, data in _read_export_files(path, wanted):
            html = data.decode("utf-8", errors="replace")
            soup = soup_of(html)
            if soup.select_one("article.h-entry") is None:
                continue
            canonical = soup.select_one("a.p-canonical[href]")
            if canonical is None:
                continue  # unpublished draft
            targets.append(
                CrawlTarget(url=str(canonical["href"]).strip(), link=link, payload=html, meta={"file": name})
            )
        if not targets:
            raise ExportError(f"no published Medium posts (posts/*.html) in {path}")
        return targets

    def crawl(self, target: CrawlTarget, ctx: CrawlContext) -> RawDocument:
        html: str = target.payload
        extracted = extract_article(
            html,
            content_selectors=("section[data-field=body]", "section.e-content"),
            title_selectors=("h1.p-name",),
            subtitle_selectors=("section[data-field=subtitle]",),
        )
        if extracted.word_count == 0:
            raise NoContent(f"exported post {target.meta.get('file')} has no text")
        node = soup_of(html).select_one("time.dt-published[datetime]")
        published = parse_datetime(attr_str(node, "datetime")) if node else extracted.published_at
        return self.make_document(
            ctx,
            target,
            title=extracted.title,
            content=extracted.markdown,
            blocks=extracted.blocks,
            published_at=published,
        )
