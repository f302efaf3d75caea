"""The resources the assets hand to training implement the protocols training is written against.

Checked twice: by pyright (scripts/lint.sh), through the annotated assignments below, and at run
time, member by member, so a resource that drifts from its protocol fails here and not in a run.
"""

from __future__ import annotations

import pytest

from resources.artifacts import ArtifactStoreResource
from resources.sagemaker import SageMakerResource
from resources.tracking import WandbResource
from twin_assets.domain.stores import ArtifactStore
from twin_assets.training.protocols import ExperimentTracker, SageMakerLauncher


def _members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (ArtifactStore, ArtifactStoreResource),
        (SageMakerLauncher, SageMakerResource),
        (ExperimentTracker, WandbResource),
    ],
)
def test_resource_has_every_protocol_member(protocol, implementation, tmp_path):
    instance = implementation()
    missing = sorted(name for name in _members(protocol) if not hasattr(instance, name))
    assert _members(protocol) and missing == []


def test_resources_type_check_as_the_protocols(tmp_path):
    artifacts: ArtifactStore = ArtifactStoreResource(root_dir=str(tmp_path))
    launcher: SageMakerLauncher = SageMakerResource()
    tracker: ExperimentTracker = WandbResource(enabled=False)
    assert not launcher.enabled  # no role, image or bucket: training runs in-process
    with tracker.start_run(name="n", group="g", job_type="sft", config={}) as run:
        assert run.report_to == []
    assert artifacts.uri("x").startswith("file://")
