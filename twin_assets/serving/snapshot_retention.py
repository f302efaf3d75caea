"""Retention of published index snapshots: every re-embedding publishes a new version (~30 MB
at 20k chunks), so after each publish the author's older versions are pruned down to the
newest `keep`.

What is never deleted:
- a version named by any alias of the author's index (`latest`, and any other an operator
  writes under `indexes/<author>/aliases/`);
- the versions the caller names in `also_keep`: `embedded_chunks` passes the one `latest` named
  before it moved, which a service may be loading at this very moment;
- a version whose card cannot be read (missing: an unfinished or crashed upload; unreadable):
  it cannot be dated, so it is neither counted nor deleted, and is reported as skipped.

"Newest" is the card's `created_at` (when the snapshot was built and first published), never
the version string: versions are content hashes, their order says nothing. Both stores carry
the same card, so a local mirror and S3 agree on it.

The deployed endpoint and the evaluation report need nothing older. The service loads only the
version `latest` names (`refresh_index`, `SnapshotIndexSource`); `deployed_endpoint` records
the index version it smoke-tested in its Dagster metadata only, and what it deployed follows
`latest` by itself; an evaluation report names its snapshot only in the text of
`rag.retriever`, and a stored report is never recomputed from the snapshot.

Why deleting is safe for a service that is loading:
- an index that is loaded is entirely in memory (`load_index` reads the arrays and payloads
  whole, no memory map), so deleting the files of a version in use changes nothing for it;
- a load starts from the alias; `latest` and the version it named just before are kept, so a
  poller never follows the alias to a version this prune removes;
- a load of a version deleted under it anyway (one named explicitly, or a service that read the
  alias two publishes ago) fails cleanly: `delete_prefix` removes a local copy by renaming it
  aside in one step and on S3 removes the card first, so a half-deleted version never passes
  for a complete one, and `load_index` checks every file against the card's hashes. A failed
  refresh is logged and the service keeps serving the index it holds until the next poll.
A machine that loads from its own mirror of S3 (a SageMaker container) keeps that copy until
the container is replaced: the pruning reaches S3 and this worker's mirror, not other disks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from twin_assets.domain.stores import ArtifactStore
from twin_assets.serving.snapshot import CARD, index_key, is_index_version

DEFAULT_KEEP = 3
ALIASES = "aliases"


@dataclass(frozen=True)
class PublishedVersion:
    version: str
    created_at: datetime


@dataclass
class PruneReport:
    """What one prune did; an error never raises, it is reported here."""

    keep: int
    kept: list[str] = field(default_factory=list)  # newest first
    pruned: list[str] = field(default_factory=list)
    protected: dict[str, list[str]] = field(default_factory=dict)  # version -> why (alias names)
    skipped: dict[str, str] = field(default_factory=dict)  # version -> why it was not dated
    errors: list[str] = field(default_factory=list)


def validate_keep(keep: int) -> int:
    """At least one version is kept: `latest` needs a version to point at."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be a whole number of versions, at least 1 (got {keep!r})")
    return keep


def alias_targets(artifacts: ArtifactStore, author_id: str) -> dict[str, list[str]]:
    """version -> the names of the aliases of the author's index pointing at it."""
    base = index_key(author_id)
    targets: dict[str, list[str]] = {}
    for name in artifacts.list_children(f"{base}/{ALIASES}"):
        if not name.endswith(".json"):
            continue
        alias = name.removesuffix(".json")
        version = artifacts.read_alias(base, alias)
        if version:
            targets.setdefault(version, []).append(alias)
    return targets


def published_versions(
    artifacts: ArtifactStore, author_id: str, skipped: dict[str, str] | None = None
) -> list[PublishedVersion]:
    """The author's stored versions, newest first by their card's `created_at` (ties: by
    version, only so that the order is stable). Versions without a readable card are left out
    and, when `skipped` is given, recorded there with the reason."""
    base = index_key(author_id)
    found: list[PublishedVersion] = []
    for name in artifacts.list_children(base):
        if not is_index_version(name):
            continue  # `aliases/` and anything this module did not write
        card_key = f"{base}/{name}/{CARD}"
        try:
            if not artifacts.exists(card_key):
                if skipped is not None:
                    skipped[name] = f"no {CARD} (an unfinished upload)"
                continue
            card = artifacts.get_json(card_key, mirror=False)
            created = datetime.fromisoformat(str(card["created_at"]))  # type: ignore[index]
        except Exception as exc:  # bad JSON, no date, a read failing: undatable, so kept
            if skipped is not None:
                skipped[name] = f"{CARD} unreadable ({type(exc).__name__}: {exc})"
            continue
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        found.append(PublishedVersion(name, created))
    found.sort(key=lambda v: (v.created_at, v.version), reverse=True)
    return found


def prune_index_versions(
    artifacts: ArtifactStore, author_id: str, keep: int = DEFAULT_KEEP, also_keep: Iterable[str] = ()
) -> PruneReport:
    """Delete the author's index versions beyond the newest `keep`, except aliased ones and
    `also_keep`. Never raises for a store problem: if the versions or aliases cannot be listed
    nothing is deleted, and a deletion that fails is reported and retried by the next prune."""
    report = PruneReport(keep=validate_keep(keep))
    try:
        protected = alias_targets(artifacts, author_id)
        versions = published_versions(artifacts, author_id, report.skipped)
    except Exception as exc:  # without the aliases nothing is known to be safe to delete
        report.errors.append(f"listing the index versions of {author_id!r} failed, nothing deleted: {exc}")
        return report
    for version in also_keep:
        if version:
            protected.setdefault(version, []).append("in use before this publish")
    report.protected = {v: why for v, why in protected.items() if any(p.version == v for p in versions)}
    for rank, published in enumerate(versions):
        if rank < report.keep or published.version in protected:
            report.kept.append(published.version)
            continue
        try:
            artifacts.delete_prefix(index_key(author_id, published.version))
        except Exception as exc:
            report.errors.append(f"deleting index version {published.version}: {type(exc).__name__}: {exc}")
            report.kept.append(published.version)
        else:
            report.pruned.append(published.version)
    return report
