"""One deployment, whatever the target: deploy the approved version, smoke-test it by name,
and only then move `production`; on any failure the previous version keeps serving.

The order is the whole point. The registry's `production` alias is what the service serves, so
it is the last thing to change: a version that cannot be deployed, or deploys but cannot answer
a RAG question with citations, never becomes production. A target that had to switch traffic
before it could test (SageMaker updates the endpoint in place) switches it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from twin_assets.deployment.smoke import DeploymentFailed, SmokeAnswer
from twin_assets.domain.models import ModelKind
from twin_assets.domain.stores import ArtifactStore


class ModelRegistry(Protocol):
    """The registry operations a deployment needs (the training registry implements them; this
    package sits beside training in the layers and takes them as an argument)."""

    def is_registered(self, author: str, kind: ModelKind, version: str) -> bool: ...

    def production_version(self, author: str) -> tuple[ModelKind, str] | None: ...

    def set_production(self, author: str, kind: ModelKind, version: str) -> None: ...


class Target(Protocol):
    """A place a twin version is served from."""

    name: str

    @property
    def url(self) -> str: ...

    def prepare(self, author: str, version: str) -> dict[str, Any]:
        """Make `version` servable by name (details for the metadata). Raises `DeploymentFailed`."""
        ...

    def smoke(self, author: str, version: str, question: str, index_version: str) -> SmokeAnswer: ...

    def revert(self, author: str) -> None:
        """Undo what `prepare` switched (nothing for a target that serves versions side by side)."""
        ...

    def confirm(self, author: str, version: str, question: str) -> dict[str, Any]:
        """After `production` moved: check the target serves `version` as the author's twin."""
        ...


class DeploymentRecord(BaseModel):
    target: str
    url: str
    author: str
    kind: ModelKind
    version: str
    index_version: str
    rollback_version: str | None = Field(description="the production version before this deployment")
    smoke: SmokeAnswer
    promoted: bool  # False: this version already was production (a refresh, e.g. a new index)
    details: dict[str, Any] = Field(default_factory=dict)


def index_version(artifacts: ArtifactStore, author: str) -> str:
    """The author's published retrieval-index snapshot the service follows (`indexes/<author>`,
    alias `latest`); "" when none is published."""
    return artifacts.read_alias(f"indexes/{author}", "latest") or ""


def deploy_version(
    target: Target,
    artifacts: ArtifactStore,
    registry: ModelRegistry,
    *,
    author: str,
    kind: ModelKind,
    version: str,
    question: str,
    log: Callable[[str], None] = lambda _: None,
) -> DeploymentRecord:
    if not registry.is_registered(author, kind, version):
        raise DeploymentFailed(f"{kind} version {version} is not registered for {author}")
    previous = registry.production_version(author)
    index = index_version(artifacts, author)
    if not index:
        raise DeploymentFailed(
            f"no published retrieval index for {author} (indexes/{author}): materialize embedded_chunks"
        )
    log(f"deploying {author} {kind} {version} with index {index} to {target.name} ({target.url})")
    details = target.prepare(author, version)
    try:
        answer = target.smoke(author, version, question, index)
    except Exception as exc:
        log(f"smoke request failed ({exc}); reverting the target")
        try:
            target.revert(author)
        except Exception as revert_exc:  # report both: the first is the cause
            raise DeploymentFailed(f"{exc}; and reverting the target failed: {revert_exc}") from exc
        raise
    log(f"smoke request answered in {answer.latency_ms:.0f} ms with {answer.citations} citation(s)")
    promoted = previous != (kind, version)
    if promoted:
        registry.set_production(author, kind, version)
        log(f"production alias of {author} -> {kind} {version} (was {previous[1] if previous else 'none'})")
    try:
        details.update(target.confirm(author, version, question))
    except Exception as exc:
        if promoted and previous is not None:
            registry.set_production(author, previous[0], previous[1])
            raise DeploymentFailed(f"{exc}; production alias moved back to {previous[1]}") from exc
        raise
    return DeploymentRecord(
        target=target.name,
        url=target.url,
        author=author,
        kind=kind,
        version=version,
        index_version=index,
        rollback_version=previous[1] if previous and previous != (kind, version) else None,
        smoke=answer,
        promoted=promoted,
        details=details,
    )
