"""The crawler's configuration as a Dagster resource.

`CrawlSettings` (twin_assets/crawling/settings.py) is the one definition of what a crawl may
do. `CrawlConfig` is generated from its fields, so every setting is also Dagster config (the
launchpad shows and validates all of them) without a second list to keep in step. The
environment variables that set them are mapped in `twin_assets/defs/resources.py`.
"""

from __future__ import annotations

from copy import copy

import dagster as dg
from pydantic import Field, create_model

from twin_assets.crawling.settings import CrawlSettings

CrawlConfig: type[dg.Config] = create_model(
    "CrawlConfig",
    __base__=dg.Config,
    __module__=__name__,
    __doc__="Every field of CrawlSettings, as Dagster config (same names, types, defaults, bounds).",
    **{name: (field.annotation, copy(field)) for name, field in CrawlSettings.model_fields.items()},  # type: ignore[call-overload]
)


class CrawlerResource(dg.ConfigurableResource):
    """Limits and switches for crawling an author's links."""

    crawl: CrawlConfig = Field(  # type: ignore[valid-type]
        default_factory=CrawlConfig, description="The crawl's CrawlSettings (see that model)."
    )

    @classmethod
    def from_settings(cls, settings: CrawlSettings) -> CrawlerResource:
        return cls(crawl=CrawlConfig(**settings.model_dump()))

    def settings(self) -> CrawlSettings:
        return CrawlSettings.model_validate(self.crawl.model_dump())
