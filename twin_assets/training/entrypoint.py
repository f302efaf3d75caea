"""Command-line entry point: the same SFT/DPO functions the assets call, run from files.

    python -m twin_assets.training.entrypoint sft --base-model ID_OR_PATH --train train.parquet \
        [--eval test.parquet] [--config cfg.json] --output DIR
    python -m twin_assets.training.entrypoint dpo --base-model ID_OR_PATH --sft-adapter DIR \
        --train train.parquet [--eval test.parquet] [--config cfg.json] --output DIR
    python -m twin_assets.training.entrypoint sagemaker   # inside a SageMaker training job

Output: `DIR/adapter/` (adapter + tokenizer with its chat template) and `DIR/result.json`
(metrics, loss curves, resolved hyper-parameters, chat template), which the asset registers.
In SageMaker mode, hyper-parameters come from /opt/ml/input/config/hyperparameters.json,
datasets from the `train`/`test`/`sft` channels and the output goes to /opt/ml/model.

Runs WITHOUT Dagster (training images do not install it): this module and everything it
imports stay inside `twin_assets.training`, `twin_assets.domain` and `twin_assets.paths`
(import-linter's layer contracts), and `test_training_entrypoint_without_dagster` runs it with
`dagster`, `dagster_aws` and `resources` made unimportable. `main()` is the top of its own
process, so it is the one place in training that reads the environment: SageMaker's
`SM_*` variables, and TWIN_BASE_MODEL as the CLI's default `--base-model`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

from twin_assets.domain.models import MODEL_KINDS
from twin_assets.training.base_model import resolve_base_model
from twin_assets.training.result import result_to_json


def _read_rows(path: str | None) -> list[dict]:
    if not path or not Path(path).exists():
        return []
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def run(
    kind: str,
    base_model: str,
    train: str,
    eval_: str | None,
    config: dict,
    output: Path,
    sft_adapter: str | None = None,
) -> dict:
    from twin_assets.training.config import DPOTrainingConfig, SFTTrainingConfig

    base = resolve_base_model(base_model)
    output.mkdir(parents=True, exist_ok=True)
    train_rows, eval_rows = _read_rows(train), _read_rows(eval_)
    if kind == "sft":
        from twin_assets.training.sft import run_sft

        cfg = SFTTrainingConfig(**{**config, "base_model": base_model})
        result = run_sft(base, train_rows, eval_rows, cfg, output / "adapter")
    elif kind == "dpo":
        from twin_assets.training.dpo import run_dpo

        if not sft_adapter:
            raise SystemExit("dpo needs --sft-adapter")
        result = run_dpo(
            base,
            Path(sft_adapter),
            train_rows,
            eval_rows,
            DPOTrainingConfig(**config),
            output / "adapter",
            sft_learning_rate=config.get("sft_learning_rate"),
        )
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    payload = result_to_json(result)
    payload["kind"] = kind
    (output / "result.json").write_text(json.dumps(payload, indent=2, default=str))
    return payload


def _sagemaker(environ: Mapping[str, str]) -> dict:
    hp_path = Path("/opt/ml/input/config/hyperparameters.json")
    hp = json.loads(hp_path.read_text()) if hp_path.exists() else {}

    def channel(name: str) -> str:
        return environ.get(f"SM_CHANNEL_{name.upper()}", f"/opt/ml/input/data/{name}")

    return run(
        hp["kind"],
        hp.get("base_model", ""),
        f"{channel('train')}/train.parquet",
        f"{channel('test')}/test.parquet",
        json.loads(hp.get("config", "{}")),
        Path(environ.get("SM_MODEL_DIR", "/opt/ml/model")),
        sft_adapter=channel("sft") if hp["kind"] == "dpo" else None,
    )


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="twin-train", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for kind in MODEL_KINDS:
        p = sub.add_parser(kind)
        p.add_argument("--base-model", default=env.get("TWIN_BASE_MODEL", ""))
        p.add_argument("--train", required=True)
        p.add_argument("--eval", default=None)
        p.add_argument("--config", default=None, help="JSON file of config overrides")
        p.add_argument("--output", required=True)
        if kind == "dpo":
            p.add_argument("--sft-adapter", required=True)
    sub.add_parser("sagemaker")
    args = parser.parse_args(argv)
    if args.command == "sagemaker":
        result = _sagemaker(env)
    else:
        config = json.loads(Path(args.config).read_text()) if args.config else {}
        result = run(
            args.command,
            args.base_model,
            args.train,
            args.eval,
            config,
            Path(args.output),
            sft_adapter=getattr(args, "sft_adapter", None),
        )
    print(json.dumps({"kind": result["kind"], "metrics": result["metrics"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
