"""Importer for a Substack data export (Settings -> Exports -> "Create new export").

The export is a zip (or its unpacked directory) holding `posts.csv` with the columns
`post_id,post_date,is_published,email_sent_at,inbox_sent_at,type,audience,title,subtitle,
podcast_url`, and `posts/<post_id>.html` with each post's *body* only (no title, no page
chrome). `post_id` is `<numeric id>.<slug>`. Other files (`posts/<post_id>.opens.csv`,
`email_list*.csv`, ...) are subscriber data, not the author's writing, and are never read.

Only rows with `is_published=true` become documents; drafts are skipped, not failures. A
published row whose HTML file is missing (or unreadable, or empty) is recorded as an
`export_error` / `no_content` failure for that post while the other posts still come through;
an export without `posts.csv` fails the whole link with `export_error`.

Links. The export does not say where the publication lives (custom domains are common), so
the canonical URL cannot be derived from the files alone. `AuthorLink` stays as it is: the
registered export path may carry the publication in its fragment,

    url: /path/to/substack-export.zip#publication=retrievalnotebook.substack.com

and each post's link is then `https://<publication>/p/<slug>` (a value with a scheme, such as
`http://127.0.0.1:8765/substack`, is used as the base as it is). Without the fragment the link
is `substack-export:<post_id>`: not clickable, but stable, so re-importing the same export
(zipped or unpacked, from any path) updates documents instead of duplicating them. Adding the
publication later changes the links once, and the warehouse then holds both versions; set it
from the start when you can.

The body goes through the same extraction as the crawled Substack pages (`extract_article`:
clutter removal, unstructured partitioning, code lifted verbatim); subscribe widgets, buttons
and captioned images are dropped.
"""

from __future__ import annotations

import csv
import html as htmllib
import io
import re
from pathlib import PurePosixPath
from urllib.parse import parse_qsl, quote, urlsplit

from twin_assets.crawling.base import BaseCrawler, CrawlContext, CrawlTarget
from twin_assets.crawling.dates import parse_datetime
from twin_assets.crawling.errors import ExportError, NoContent
from twin_assets.crawling.exports import _read_export_files
from twin_assets.crawling.extract import extract_article
from twin_assets.crawling.safety import check_export_path
from twin_assets.crawling.substack import SubstackCrawler
from twin_assets.domain.documents import AuthorLink, Platform, RawDocument, SourceKind

STABLE_SCHEME = "substack-export"
_PUBLISHED = {"true", "t", "1", "yes"}
_HOST = re.compile(
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$", re.IGNORECASE
)
# What Substack embeds in a post body that is not the author's prose.
_CLUTTER = (
    *SubstackCrawler.clutter_selectors,
    ".captioned-image-container",
    "figure",
    "figcaption",
    ".image-gallery-embed",
    ".embedded-post-wrap",
    ".digest-post-embed",
    ".install-substack-app-embed",
    ".poll-embed",
    ".tweet",
    ".youtube-wrap",
)


def split_export_link(url: str) -> tuple[str, str | None]:
    """(export path, publication base URL or None) of a registered export link.

    Only a fragment carrying `publication=` is taken off; any other `#` stays part of the path.
    """
    path, sep, fragment = url.rpartition("#")
    if not sep:
        return url, None
    params = dict(parse_qsl(fragment, keep_blank_values=True))
    if "publication" not in params:
        return url, None
    return path, publication_base(params["publication"])


def publication_base(value: str) -> str:
    """`host[:port]` or `scheme://host[:port][/path]` -> base URL without a trailing slash."""
    value = value.strip().rstrip("/")
    if "://" not in value:
        if not _HOST.match(value):
            raise ExportError(f"publication {value!r} is not a host name (e.g. name.substack.com)")
        return f"https://{value.lower()}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ExportError(f"publication {value!r} is not an http(s) base URL")
    return value


def post_link(post_id: str, publication: str | None) -> str:
    """Canonical `/p/<slug>` URL when the publication is known, else the stable export link."""
    _, dot, slug = post_id.partition(".")
    if publication and dot and slug:
        return f"{publication}/p/{quote(slug, safe='-_.~')}"
    return f"{STABLE_SCHEME}:{post_id}"


def _is_wanted(name: str) -> bool:
    p = PurePosixPath(name)
    if p.name.lower() == "posts.csv":
        return True
    return p.suffix.lower() == ".html" and p.parent.name == "posts"


def _page_html(title: str, subtitle: str, body: str) -> str:
    """The exported body wrapped as a page, so the shared extractor sees title and subtitle."""
    sub = f'<h3 class="subtitle">{htmllib.escape(subtitle)}</h3>' if subtitle.strip() else ""
    return (
        f"<html><head><title>{htmllib.escape(title)}</title></head><body><article>"
        f'<h1 class="post-title">{htmllib.escape(title)}</h1>{sub}'
        f'<div class="available-content"><div class="body markup">{body}</div></div>'
        f"</article></body></html>"
    )


class SubstackExportImporter(BaseCrawler):
    platform = Platform.SUBSTACK
    source = SourceKind.EXPORT

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        raw_path, publication = split_export_link(link.url)
        path = check_export_path(raw_path, ctx.settings)
        if path.is_file() and path.name.lower() == "posts.csv":
            path = path.parent  # pointed at the CSV: its posts/ folder sits beside it
        files = dict(_read_export_files(path, _is_wanted))
        csvs = sorted(
            (n for n in files if PurePosixPath(n).name.lower() == "posts.csv"),
            key=lambda n: (len(PurePosixPath(n).parts), n),
        )
        if not csvs:
            raise ExportError(f"no posts.csv in Substack export {path}")
        root = PurePosixPath(csvs[0]).parent  # a zip may wrap everything in one folder
        try:
            rows = list(csv.DictReader(io.StringIO(files[csvs[0]].decode("utf-8-sig"))))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ExportError(f"{csvs[0]} in {path} is not a readable CSV: {exc}") from exc
        if rows and "post_id" not in {(k or "").strip().lower() for k in rows[0]}:
            raise ExportError(f"{csvs[0]} in {path} has no post_id column")

        targets: list[CrawlTarget] = []
        for line, raw_row in enumerate(rows, start=2):  # line 1 is the header
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw_row.items()}
            if row.get("is_published", "").lower() not in _PUBLISHED:
                continue  # a draft: not (yet) the author's published writing
            post_id = row.get("post_id", "")
            if not post_id:
                targets.append(
                    CrawlTarget(
                        url=f"{STABLE_SCHEME}:{path.name}:posts.csv:{line}",
                        link=link,
                        payload=None,
                        meta={"error": f"posts.csv line {line} in {path} has no post_id"},
                    )
                )
                continue
            member = (root / "posts" / f"{post_id}.html").as_posix()
            body = files.get(member)
            meta: dict = {"row": row, "file": member}
            if body is None:
                meta["error"] = f"{member} is missing from Substack export {path}"
            targets.append(
                CrawlTarget(url=post_link(post_id, publication), link=link, payload=body, meta=meta)
            )
        if not targets:
            raise NoContent(f"Substack export {path} holds no published posts")
        return targets

    def crawl(self, target: CrawlTarget, ctx: CrawlContext) -> RawDocument:
        if error := target.meta.get("error"):
            raise ExportError(error)
        row: dict[str, str] = target.meta["row"]
        try:
            body = target.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExportError(f"{target.meta['file']} is not UTF-8: {exc}") from exc
        title = row.get("title") or row.get("post_id", "")
        extracted = extract_article(
            _page_html(title, row.get("subtitle", ""), body),
            content_selectors=("div.body.markup",),
            clutter_selectors=_CLUTTER,
            title_selectors=("h1.post-title",),
            subtitle_selectors=("h3.subtitle",),
        )
        if extracted.word_count == 0:
            raise NoContent(f"exported post {target.meta['file']} has no text")
        published = parse_datetime(row.get("post_date")) or parse_datetime(row.get("email_sent_at"))
        return self.make_document(
            ctx,
            target,
            title=extracted.title,
            content=extracted.markdown,
            blocks=extracted.blocks,
            published_at=published,
        )
