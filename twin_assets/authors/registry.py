"""The author registry: which authors have twins and which links are theirs.

The registry is a YAML file (TWIN_AUTHORS_FILE, default `authors.yaml` at the repo root) that a
sensor watches: adding an author, or changing an author's links, adds the author's partition and
requests a crawl. A file under version control gives review, history and rollback of exactly
what each twin may read, which a click in a UI does not. Only the links listed here are followed.

Values may use the `${VAR}` placeholders `TWIN_SAMPLE_SITE_URL`, `TWIN_SAMPLE_DIR` and
`TWIN_DATA_DIR` and no others: a link is a URL the crawler fetches, so `${TWIN_LLM_API_KEY}` in a
registry edit would send a secret to whatever server the link names. Their values are passed in
(`twin_assets/defs/resources.py` takes them from the environment); unset ones are the local
defaults for the bundled sample. This module never looks at the environment itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from twin_assets.domain.documents import Author, sha256_text
from twin_assets.paths import SAMPLE_DATA_DIR, data_dir

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RegistryError(ValueError):
    """The registry file is missing, unreadable or invalid; the message says where."""


PLACEHOLDERS = ("TWIN_SAMPLE_SITE_URL", "TWIN_SAMPLE_DIR", "TWIN_DATA_DIR")


def placeholder_defaults() -> dict[str, str]:
    return {
        "TWIN_SAMPLE_SITE_URL": "http://127.0.0.1:8765",
        "TWIN_SAMPLE_DIR": str(SAMPLE_DATA_DIR),
        "TWIN_DATA_DIR": str(data_dir()),
    }


def resolve_placeholders(values: Mapping[str, str] | None = None) -> dict[str, str]:
    """The defaults overridden by the given non-empty values; naming any other variable is an
    error, so a configuration cannot widen what a registry may expand."""
    given = {name: value for name, value in (values or {}).items() if value}
    unknown = sorted(set(given) - set(PLACEHOLDERS))
    if unknown:
        raise RegistryError(f"not registry placeholders: {', '.join(unknown)}")
    return {**placeholder_defaults(), **given}


def expand(value: str, placeholders: Mapping[str, str] | None = None) -> str:
    """Substitute the documented placeholders only; any other `${VAR}` is an error, never a
    lookup in the environment (which holds credentials)."""
    lookup = resolve_placeholders(placeholders)

    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name not in lookup:
            raise RegistryError(
                f"variable ${{{name}}} is not allowed in {value!r}; "
                f"only {', '.join('${' + n + '}' for n in sorted(lookup))} are expanded"
            )
        return lookup[name]

    return _VAR.sub(sub, value)


class _RegistryFile(BaseModel):
    authors: list[Author]


def parse_registry(
    text: str, source: str = "<registry>", placeholders: Mapping[str, str] | None = None
) -> list[Author]:
    """Parse and validate a registry; duplicate ids are an error, not a silent overwrite."""
    lookup = resolve_placeholders(placeholders)
    try:
        raw = yaml.safe_load(text) or {"authors": []}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RegistryError(f"{source}: expected a mapping with an 'authors' list")
    authors = raw.get("authors") or []
    for i, author in enumerate(authors if isinstance(authors, list) else []):
        links = author.get("links") if isinstance(author, dict) else None
        for j, link in enumerate(links if isinstance(links, list) else []):
            if isinstance(link, dict) and isinstance(link.get("url"), str):
                try:
                    link["url"] = expand(link["url"], lookup)
                except RegistryError as exc:
                    raise RegistryError(f"{source}: authors[{i}].links[{j}].url: {exc}") from None
    try:
        parsed = _RegistryFile.model_validate({"authors": authors})
    except ValidationError as exc:
        raise RegistryError(f"{source}: {_problems(exc)}") from exc
    seen: set[str] = set()
    for author in parsed.authors:
        if author.id in seen:
            raise RegistryError(f"{source}: author id {author.id!r} appears twice")
        seen.add(author.id)
    return parsed.authors


def _problems(exc: ValidationError) -> str:
    """`authors[0].id: <why>; ...`: where in the file, and why, on one line."""

    def where(loc: tuple) -> str:
        return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")

    return "; ".join(f"{where(err['loc'])}: {err['msg']}" for err in exc.errors())


def load_registry(path: Path, placeholders: Mapping[str, str] | None = None) -> list[Author]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read author registry {path}: {exc}") from exc
    return parse_registry(text, source=str(path), placeholders=placeholders)


def author_fingerprint(author: Author) -> str:
    """Changes when what we crawl for the author changes (name or links), not on re-reads."""
    payload = json.dumps(
        {"name": author.full_name, "links": [link.model_dump(mode="json") for link in author.links]},
        sort_keys=True,
    )
    return sha256_text(payload)[:16]
