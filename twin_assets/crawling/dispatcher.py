"""Which crawler handles a registered link.

Order: a data export goes to the importer of its platform; a git source to the git crawler; a
link with an explicit `platform` hint (custom domain, local copy) to that platform's crawler;
otherwise the link's host is matched against registered domains (subdomains included:
`maya.medium.com` is Medium); anything else is a generic article. Adding a platform means
writing one crawler class and adding one `register` call in `default_registry`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twin_assets.crawling.base import BaseCrawler
from twin_assets.crawling.errors import ExportError
from twin_assets.crawling.exports import LinkedInExportImporter, MediumExportImporter
from twin_assets.crawling.generic import GenericArticleCrawler
from twin_assets.crawling.github import GithubCrawler
from twin_assets.crawling.linkedin import LinkedInCrawler
from twin_assets.crawling.medium import MediumCrawler
from twin_assets.crawling.substack import SubstackCrawler
from twin_assets.crawling.substack_export import SubstackExportImporter
from twin_assets.domain.documents import AuthorLink, Platform, SourceKind


class CrawlerRegistry:
    def __init__(self, fallback: BaseCrawler | None = None):
        self._by_domain: dict[str, BaseCrawler] = {}
        self._by_platform: dict[tuple[Platform, SourceKind], BaseCrawler] = {}
        self.fallback = fallback or GenericArticleCrawler()

    def register(self, crawler: BaseCrawler) -> BaseCrawler:
        for domain in crawler.domains:
            self._by_domain[domain.lower().lstrip(".")] = crawler
        self._by_platform.setdefault((crawler.platform, crawler.source), crawler)
        return crawler

    @property
    def crawlers(self) -> list[BaseCrawler]:
        return list(dict.fromkeys([*self._by_platform.values(), self.fallback]))

    def for_domain(self, host: str) -> BaseCrawler | None:
        host = host.lower().rstrip(".")
        labels = host.split(".")
        for i in range(len(labels) - 1):  # most specific suffix first
            if crawler := self._by_domain.get(".".join(labels[i:])):
                return crawler
        return None

    def for_platform(self, platform: Platform, source: SourceKind) -> BaseCrawler | None:
        if crawler := self._by_platform.get((platform, source)):
            return crawler
        if source == SourceKind.EXPORT:
            return None  # an export is never crawled as a web page
        for (p, s), crawler in self._by_platform.items():
            if p == platform and s != SourceKind.EXPORT:
                return crawler
        return None

    def for_link(self, link: AuthorLink) -> BaseCrawler:
        if link.kind == SourceKind.EXPORT:
            crawler = self.for_platform(link.platform, SourceKind.EXPORT) if link.platform else None
            if crawler is None:
                raise ExportError(
                    f"no importer for {link.platform or 'unspecified'} exports "
                    f"(set the link's platform to linkedin, medium or substack)"
                )
            return crawler
        if link.kind == SourceKind.GIT:
            return self.for_platform(link.platform or Platform.GITHUB, SourceKind.GIT) or self.for_platform(
                Platform.GITHUB, SourceKind.GIT
            )  # type: ignore[return-value]
        if link.platform is not None:
            if link.platform == Platform.WEB:
                return self.fallback
            if crawler := self.for_platform(link.platform, SourceKind.WEB) or self.for_platform(
                link.platform, SourceKind.GIT
            ):
                return crawler
        host = urlsplit(link.url).hostname or ""
        return self.for_domain(host) or self.fallback


def default_registry() -> CrawlerRegistry:
    registry = CrawlerRegistry(fallback=GenericArticleCrawler())
    registry.register(MediumCrawler())
    registry.register(SubstackCrawler())
    registry.register(LinkedInCrawler())
    registry.register(GithubCrawler())
    registry.register(LinkedInExportImporter())
    registry.register(MediumExportImporter())
    registry.register(SubstackExportImporter())
    return registry
