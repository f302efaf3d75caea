#!/usr/bin/env bash
# The H100 run of benchmarks/sft_throughput.py, as sent to a lent GPU machine (see README).
# Expects the wheels of packages the GPU image lacks (trl, datasets, liger-kernel, pydantic, ...)
# in .whl/ and writes its figures to $OUT (or ./bench-out).
set -u
OUT="${OUT:-bench-out}"; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/dev/site-packages .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/dev/site-packages:$PWD"  # "site-packages" in the path: dill pickles such modules by reference
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft, trl, datasets, liger_kernel; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"
TOKENS="${TOKENS:-300000}"
timeout "${MAIN_TIMEOUT:-360}" python3 benchmarks/sft_throughput.py --tokens "$TOKENS" --out "$OUT/sft_throughput.json" 2>&1 | tee "$OUT/main.log" | grep -v Warning
for extra in ${EXTRA_C:-}; do
  timeout 150 python3 benchmarks/sft_throughput.py --variants c --tokens "$TOKENS" ${extra//:/ } --out "$OUT/c_${extra//[^a-z0-9]/_}.json" 2>&1 | tail -5
done
