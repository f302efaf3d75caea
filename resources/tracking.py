"""Experiment tracking with wandb (dagster-wandb does not import with wandb >= 0.30).

Offline by default: runs are written under `<data_dir>/wandb` and can be uploaded later with
`wandb sync <run dir>`; online when WANDB_API_KEY is set (or mode="online" configured).
trl's own `report_to=["wandb"]` callback logs the step-wise losses into the run opened here
(it reuses an active `wandb.run`), and this resource adds config, summary and tables.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import dagster as dg
from pydantic import Field


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

        rows = [[name, step, value] for name, pts in curves.items() for step, value in pts]
        self.run.log({"loss_curves": wandb.Table(columns=["series", "step", "value"], data=rows)})

    def as_metadata(self) -> dict[str, str]:
        return {"mode": self.mode, "run_id": self.run_id, "run_dir": self.run_dir, "url": self.url}


class WandbResource(dg.ConfigurableResource):
    enabled: bool = Field(default=True, description="False: no tracking at all (TWIN_WANDB_ENABLED).")
    project: str = Field(default="llm-twin", description="WANDB_PROJECT")
    entity: str = Field(default="", description="WANDB_ENTITY (team/user); empty = default.")
    mode: str = Field(default="", description="online|offline|disabled; empty = online iff an API key is set.")
    api_key: str = Field(default="", description="WANDB_API_KEY (secret: pass as EnvVar).")
    dir: str = Field(default=".data/wandb", description="Where run files are written.")

    def resolved_mode(self) -> str:
        if self.mode:
            return self.mode
        return "online" if (self.api_key or os.environ.get("WANDB_API_KEY")) else "offline"

    @contextmanager
    def start_run(
        self, *, name: str, group: str, job_type: str, config: dict[str, Any], tags: list[str] | None = None
    ) -> Iterator[TrackedRun]:
        if not self.enabled or self.resolved_mode() == "disabled":
            yield TrackedRun(None, "", "", "", "disabled")
            return
        import wandb

        mode = self.resolved_mode()
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        # trl's callback reads these when it touches wandb; keep them consistent with our run.
        os.environ["WANDB_MODE"] = mode
        os.environ["WANDB_DIR"] = str(Path(self.dir).resolve())
        os.environ["WANDB_PROJECT"] = self.project
        os.environ.setdefault("WANDB_SILENT", "true")
        if self.api_key:
            os.environ["WANDB_API_KEY"] = self.api_key
        run = wandb.init(
            project=self.project, entity=self.entity or None, name=name, group=group,
            job_type=job_type, config=config, tags=tags or [], dir=str(Path(self.dir).resolve()),
            mode=mode, reinit="finish_previous",
        )
        tracked = TrackedRun(run, str(Path(run.dir).parent), run.id, run.url or "", mode)
        try:
            yield tracked
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()
