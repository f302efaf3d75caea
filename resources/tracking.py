"""Experiment tracking with wandb (dagster-wandb does not import with wandb >= 0.30).

Offline by default: runs are written under `<data_dir>/wandb` and can be uploaded later with
`wandb sync <run dir>`; online when an API key is configured (or mode="online").
trl's own `report_to=["wandb"]` callback logs the step-wise losses into the run opened here
(it reuses an active `wandb.run`), and this resource adds config, summary and tables.

Everything wandb needs is passed to `wandb.init` (mode, dir, `wandb.Settings` with the key):
the resource neither reads nor writes the process environment, so two runs in one process
cannot leak settings into each other and the key never lands in `os.environ` or `~/.netrc`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import dagster as dg
from pydantic import Field

# The modes `wandb.init` takes; `WandbResource.mode` is a plain string, which wandb validates.
WandbMode = Literal["online", "offline", "disabled", "shared"]


@dataclass
class TrackedRun:
    run: Any  # wandb.sdk.wandb_run.Run, or None when tracking is disabled
    run_dir: str
    run_id: str
    url: str
    mode: str

    @property
    def report_to(self) -> list[str]:
        return ["wandb"] if self.run is not None else []

    def log_summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in metrics.items():
                self.run.summary[k] = v

    def log_curves(self, curves: dict[str, list[tuple[int, float]]]) -> None:
        if self.run is None:
            return
        import wandb

        rows: list[Iterable[Any]] = [
            [name, step, value] for name, pts in curves.items() for step, value in pts
        ]
        self.run.log({"loss_curves": wandb.Table(columns=["series", "step", "value"], data=rows)})

    def as_metadata(self) -> dict[str, str]:
        return {"mode": self.mode, "run_id": self.run_id, "run_dir": self.run_dir, "url": self.url}


class WandbResource(dg.ConfigurableResource):
    enabled: bool = Field(default=True, description="False: no tracking at all (TWIN_WANDB_ENABLED).")
    project: str = Field(default="llm-twin", description="WANDB_PROJECT")
    entity: str = Field(default="", description="WANDB_ENTITY (team/user); empty = default.")
    mode: str = Field(
        default="", description="online|offline|disabled; empty = online iff an API key is set."
    )
    api_key: str = Field(default="", description="WANDB_API_KEY (secret: pass as EnvVar).")
    dir: str = Field(default=".data/wandb", description="Where run files are written (WANDB_DIR).")
    silent: bool = Field(default=True, description="Keep wandb's console output quiet (WANDB_SILENT).")

    def resolved_mode(self) -> str:
        if self.mode:
            return self.mode
        return "online" if self.api_key else "offline"

    @contextmanager
    def start_run(
        self, *, name: str, group: str, job_type: str, config: dict[str, Any], tags: list[str] | None = None
    ) -> Iterator[TrackedRun]:
        if not self.enabled or self.resolved_mode() == "disabled":
            yield TrackedRun(None, "", "", "", "disabled")
            return
        import wandb

        mode = self.resolved_mode()
        run_dir = Path(self.dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        # only what is configured: an unset key must not override wandb's own login
        given: dict[str, Any] = {"silent": self.silent}
        if self.api_key:
            given["api_key"] = self.api_key
        settings = wandb.Settings(**given)
        run = wandb.init(
            project=self.project,
            entity=self.entity or None,
            name=name,
            group=group,
            job_type=job_type,
            config=config,
            tags=tags or [],
            dir=str(run_dir),
            mode=cast(WandbMode, mode),
            settings=settings,
            reinit="finish_previous",  # type: ignore[arg-type]
        )
        tracked = TrackedRun(run, str(Path(run.dir).parent), run.id, run.url or "", mode)
        try:
            yield tracked
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()
