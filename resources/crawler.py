"""The crawler's configuration as a Dagster resource.

Production values come from environment variables (all optional; defaults are the safe ones):

| variable | field | default |
|---|---|---|
| TWIN_CRAWL_ALLOW_HOSTS | allow_hosts (comma-separated hosts/IPs/CIDRs allowed despite being private) | "" |
| TWIN_CRAWL_ALLOW_LOCAL | allow_local_sources (local git paths, file:// URLs and data exports) | false |
| TWIN_CRAWL_EXPORT_ROOTS | export_roots (comma-separated dirs that data exports must lie in; when set, exports there are allowed even without TWIN_CRAWL_ALLOW_LOCAL) | "" (exports need TWIN_CRAWL_ALLOW_LOCAL) |
| TWIN_CHROMIUM_PATH | chromium_path | /usr/bin/chromium |
| TWIN_CRAWL_BROWSER | browser_mode: auto / always / never | auto |
| TWIN_CRAWL_TIMEOUT_S | page_timeout_s | 20 |
| TWIN_CRAWL_MAX_PAGE_BYTES | max_page_bytes | 5242880 |
| TWIN_CRAWL_MAX_RETRIES | max_retries | 2 |
| TWIN_CRAWL_BACKOFF_S | backoff_base_s | 0.5 |
| TWIN_CRAWL_DOMAIN_INTERVAL_S | min_domain_interval_s (per-host rate limit) | 1.0 |
| TWIN_CRAWL_MAX_SCROLL_ROUNDS | max_scroll_rounds (infinite-scroll rounds per listing page; 0 = off) | 20 |
| TWIN_CRAWL_SCROLL_SETTLE_S | scroll_settle_s (how long a round waits for the page to grow) | 1.5 |
| TWIN_CRAWL_MAX_REPO_FILE_BYTES | max_repo_file_bytes | 262144 |
| TWIN_CRAWL_MAX_REPO_BYTES | max_repo_total_bytes | 5242880 |
| TWIN_CRAWL_MAX_REPO_FILES | max_repo_files | 500 |
| TWIN_CRAWL_GIT_TIMEOUT_S | git_timeout_s | 120 |
| TWIN_CRAWL_USER_AGENT | user_agent | a Chrome-like UA naming LLMTwinCrawler |
| TWIN_GITHUB_API | github_api_base | https://api.github.com |
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from twin_assets.crawling.settings import DEFAULT_USER_AGENT, CrawlSettings


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class CrawlerResource(dg.ConfigurableResource):
    """Limits and switches for crawling an author's links (see the module docstring)."""

    allow_hosts: list[str] = Field(default_factory=list)
    allow_local_sources: bool = False
    export_roots: list[str] = Field(default_factory=list)
    chromium_path: str = "/usr/bin/chromium"
    browser_mode: str = "auto"
    page_timeout_s: float = 20.0
    max_page_bytes: int = 5 * 1024 * 1024
    max_retries: int = 2
    backoff_base_s: float = 0.5
    min_domain_interval_s: float = 1.0
    max_scroll_rounds: int = 20
    scroll_settle_s: float = 1.5
    max_repo_file_bytes: int = 256 * 1024
    max_repo_total_bytes: int = 5 * 1024 * 1024
    max_repo_files: int = 500
    git_timeout_s: float = 120.0
    user_agent: str = DEFAULT_USER_AGENT
    github_api_base: str = "https://api.github.com"

    def settings(self) -> CrawlSettings:
        return CrawlSettings(
            allow_hosts=list(self.allow_hosts),
            allow_local_sources=self.allow_local_sources,
            export_roots=list(self.export_roots),
            chromium_path=self.chromium_path,
            browser_mode=self.browser_mode,  # validated by CrawlSettings (auto/always/never)
            page_timeout_s=self.page_timeout_s,
            max_page_bytes=self.max_page_bytes,
            max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s,
            min_domain_interval_s=self.min_domain_interval_s,
            max_scroll_rounds=self.max_scroll_rounds,
            scroll_settle_s=self.scroll_settle_s,
            max_repo_file_bytes=self.max_repo_file_bytes,
            max_repo_total_bytes=self.max_repo_total_bytes,
            max_repo_files=self.max_repo_files,
            git_timeout_s=self.git_timeout_s,
            user_agent=self.user_agent,
            github_api_base=self.github_api_base,
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CrawlerResource:
        env = os.environ if environ is None else environ
        d = CrawlSettings()
        return cls(
            allow_hosts=_csv(env.get("TWIN_CRAWL_ALLOW_HOSTS", "")),
            allow_local_sources=_bool(env.get("TWIN_CRAWL_ALLOW_LOCAL", "false")),
            export_roots=_csv(env.get("TWIN_CRAWL_EXPORT_ROOTS", "")),
            chromium_path=env.get("TWIN_CHROMIUM_PATH", d.chromium_path),
            browser_mode=env.get("TWIN_CRAWL_BROWSER", d.browser_mode),
            page_timeout_s=float(env.get("TWIN_CRAWL_TIMEOUT_S", d.page_timeout_s)),
            max_page_bytes=int(env.get("TWIN_CRAWL_MAX_PAGE_BYTES", d.max_page_bytes)),
            max_retries=int(env.get("TWIN_CRAWL_MAX_RETRIES", d.max_retries)),
            backoff_base_s=float(env.get("TWIN_CRAWL_BACKOFF_S", d.backoff_base_s)),
            min_domain_interval_s=float(env.get("TWIN_CRAWL_DOMAIN_INTERVAL_S", d.min_domain_interval_s)),
            max_scroll_rounds=int(env.get("TWIN_CRAWL_MAX_SCROLL_ROUNDS", d.max_scroll_rounds)),
            scroll_settle_s=float(env.get("TWIN_CRAWL_SCROLL_SETTLE_S", d.scroll_settle_s)),
            max_repo_file_bytes=int(env.get("TWIN_CRAWL_MAX_REPO_FILE_BYTES", d.max_repo_file_bytes)),
            max_repo_total_bytes=int(env.get("TWIN_CRAWL_MAX_REPO_BYTES", d.max_repo_total_bytes)),
            max_repo_files=int(env.get("TWIN_CRAWL_MAX_REPO_FILES", d.max_repo_files)),
            git_timeout_s=float(env.get("TWIN_CRAWL_GIT_TIMEOUT_S", d.git_timeout_s)),
            user_agent=env.get("TWIN_CRAWL_USER_AGENT", d.user_agent),
            github_api_base=env.get("TWIN_GITHUB_API", d.github_api_base),
        )
