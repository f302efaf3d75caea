"""Limits and switches of one crawl, as a plain pydantic model.

The crawling functions take it as an argument, so they can be tested without Dagster.
`resources/crawler.py` derives its Dagster config from these fields, and
`twin_assets/defs/resources.py` maps one environment variable to each of them (a test fails
when a field has none).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/140.0 Safari/537.36 LLMTwinCrawler/1.0"
)

BrowserMode = Literal["auto", "always", "never"]


class CrawlSettings(BaseModel):
    """Everything a crawl is allowed to do. Defaults are the safe production values."""

    # SSRF allow-list: host names, IP addresses or CIDRs that may be fetched even though they
    # resolve to private/loopback addresses (a local demo site, an intranet blog). Each may
    # name one port (`127.0.0.1:8765`, `[::1]:8080`, `blog.internal:8080`), which is
    # recommended: an entry without a port admits every port of that host (its database too).
    allow_hosts: list[str] = Field(default_factory=list)
    # Local git repositories (paths, file:// URLs) and data exports may only be read when
    # explicitly allowed: otherwise a registered link could read any file on the crawler's machine.
    allow_local_sources: bool = False
    # If non-empty, data-export paths must lie under one of these directories (and exports
    # there are allowed even when `allow_local_sources` is off).
    export_roots: list[str] = Field(default_factory=list)

    chromium_path: str = "/usr/bin/chromium"
    # auto: each crawler decides (JS-heavy platforms render in Chromium, others use plain
    # HTTP and fall back to Chromium when nothing could be extracted); always / never: forced.
    browser_mode: BrowserMode = "auto"
    block_heavy_resources: bool = True  # images, fonts and media are never needed for text

    page_timeout_s: float = Field(default=20.0, gt=0)
    max_page_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    max_retries: int = Field(default=2, ge=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    min_domain_interval_s: float = Field(default=1.0, ge=0)
    max_listing_items: int = Field(default=200, gt=0)
    # Listing pages that load more items as the reader scrolls (Medium profiles, Substack
    # archives, LinkedIn feeds, infinite-scroll blogs) are scrolled in Chromium until a round
    # adds nothing, this many rounds have run (0 turns scrolling off), the page holds
    # `max_listing_items` more links than it loaded with, or `page_timeout_s` of scrolling has
    # passed. Each round waits up to `scroll_settle_s` for the page to grow.
    max_scroll_rounds: int = Field(default=20, ge=0)
    scroll_settle_s: float = Field(default=1.5, gt=0)
    user_agent: str = DEFAULT_USER_AGENT

    git_timeout_s: float = Field(default=120.0, gt=0)
    max_repo_file_bytes: int = Field(default=256 * 1024, gt=0)
    max_repo_total_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_repo_files: int = Field(default=500, gt=0)
    github_api_base: str = "https://api.github.com"
