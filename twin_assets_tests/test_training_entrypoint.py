"""The training entry point runs where Dagster is not installed (SageMaker/GPU training images).

The import-linter contracts check this statically; these tests check it for real, in a fresh
interpreter where `dagster`, `dagster_aws` and the `resources` package cannot be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from twin_assets.paths import PROJECT_ROOT
from twin_assets_tests.training_fixtures import instruction_rows, tiny_model

# Makes every later `import dagster...`/`import resources...` raise ImportError, as on an image
# without them (a None entry in sys.modules is how Python marks a module unimportable).
_NO_DAGSTER = textwrap.dedent(
    """
    import sys
    for name in ("dagster", "dagster_aws", "dagster_webserver", "resources"):
        sys.modules[name] = None
    """
)
_ORCHESTRATION = ("dagster", "dagster_aws", "dagster_webserver", "resources")


def _python(code: str, tmp_path: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "TWIN_DATA_DIR": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.run(
        [sys.executable, "-c", _NO_DAGSTER + textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_training_module_imports_without_dagster(tmp_path):
    proc = _python(
        f"""
        import importlib, pkgutil
        import twin_assets.training as pkg
        names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."))
        for name in names:
            importlib.import_module(name)
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in {_ORCHESTRATION!r} and sys.modules[n])
        print(len(names), loaded)
        """,
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    count, loaded = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 10 and loaded == "[]"


def test_entrypoint_trains_sft_without_dagster(tmp_path):
    """A tiny SFT through `main()`, as `python -m twin_assets.training.entrypoint sft` runs it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = tiny_model(tmp_path)
    rows = instruction_rows()
    pq.write_table(pa.Table.from_pylist(rows[:16]), tmp_path / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows[16:20]), tmp_path / "test.parquet")
    (tmp_path / "cfg.json").write_text(json.dumps({"max_steps": 2, "max_length": 128}))
    out = tmp_path / "out"
    proc = _python(
        f"""
        from twin_assets.training.entrypoint import main
        code = main(["sft", "--base-model", {str(base)!r}, "--train", "train.parquet",
                     "--eval", "test.parquet", "--config", "cfg.json", "--output", {str(out)!r}])
        assert not [n for n in sys.modules if n.split(".")[0] in {_ORCHESTRATION!r} and sys.modules[n]]
        raise SystemExit(code)
        """,
        tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    assert result["kind"] == "sft" and result["metrics"]["train_loss"] > 0
    assert result["hyperparameters"]["max_steps"] == 2 and result["smoke_test"] is True
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads(proc.stdout.strip().splitlines()[-1])["kind"] == "sft"
