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
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

from twin_assets.training.base_model import resolve_base_model


def _read_rows(path: str | None) -> list[dict]:
    if not path or not Path(path).exists():
        return []
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def run(kind: str, base_model: str, train: str, eval_: str | None, config: dict, output: Path,
        sft_adapter: str | None = None) -> dict:
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
        result = run_dpo(base, Path(sft_adapter), train_rows, eval_rows, DPOTrainingConfig(**config),
                         output / "adapter", sft_learning_rate=config.get("sft_learning_rate"))
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    payload = {k: v for k, v in asdict(result).items() if k != "model_dir"}
    payload["kind"] = kind
    (output / "result.json").write_text(json.dumps(payload, indent=2, default=str))
    return payload


def _sagemaker() -> dict:
    hp_path = Path("/opt/ml/input/config/hyperparameters.json")
    hp = json.loads(hp_path.read_text()) if hp_path.exists() else {}
    channel = lambda name: os.environ.get(f"SM_CHANNEL_{name.upper()}", f"/opt/ml/input/data/{name}")  # noqa: E731
    return run(
        hp["kind"], hp.get("base_model", ""), f"{channel('train')}/train.parquet",
        f"{channel('test')}/test.parquet", json.loads(hp.get("config", "{}")),
        Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model")),
        sft_adapter=channel("sft") if hp["kind"] == "dpo" else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twin-train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for kind in ("sft", "dpo"):
        p = sub.add_parser(kind)
        p.add_argument("--base-model", default=os.environ.get("TWIN_BASE_MODEL", ""))
        p.add_argument("--train", required=True)
        p.add_argument("--eval", default=None)
        p.add_argument("--config", default=None, help="JSON file of config overrides")
        p.add_argument("--output", required=True)
        if kind == "dpo":
            p.add_argument("--sft-adapter", required=True)
    sub.add_parser("sagemaker")
    args = parser.parse_args(argv)
    if args.command == "sagemaker":
        result = _sagemaker()
    else:
        config = json.loads(Path(args.config).read_text()) if args.config else {}
        result = run(args.command, args.base_model, args.train, args.eval, config, Path(args.output),
                     sft_adapter=getattr(args, "sft_adapter", None))
    print(json.dumps({"kind": result["kind"], "metrics": result["metrics"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
