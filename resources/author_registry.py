"""Access to the author registry file (see `twin_assets.authors.registry` for its format and why)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from twin_assets.authors.registry import RegistryError, load_registry
from twin_assets.domain.documents import Author


class AuthorRegistryResource(dg.ConfigurableResource):
    path: str = Field(default="authors.yaml", description="Registry YAML (TWIN_AUTHORS_FILE).")
    placeholders: dict[str, str] = Field(
        default_factory=dict,
        description="Values of the registry's ${TWIN_SAMPLE_SITE_URL}, ${TWIN_SAMPLE_DIR} and "
        "${TWIN_DATA_DIR} (the variables of the same names); missing ones: the bundled sample's.",
    )

    def authors(self) -> list[Author]:
        return load_registry(Path(self.path), self.placeholders)

    def get(self, author_id: str) -> Author:
        for author in self.authors():
            if author.id == author_id:
                return author
        raise RegistryError(
            f"author {author_id!r} is not in the registry {self.path}; "
            "add it there (only registered authors and links are crawled)"
        )
