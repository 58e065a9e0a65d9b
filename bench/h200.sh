#!/usr/bin/env bash
# The one GPU check of issue 17, on the H200 device machine, from the repo root with .whl/ carried (made here by
# `bash tools/gpu_wheels.sh`): installs the wheels the machine lacks into /tmp/site (our package comes through
# PYTHONPATH), prints the GPU, torch and an import check, then runs bench/gpu_throughput.py. Everything goes to
# $OUT/h200.log (OUT: set by the device tool; /tmp/out elsewhere), the figures to $OUT/gpu_throughput.json and the
# bench's process logs to $OUT/bench-logs.tar.gz. The whole script stops after H200_BUDGET_S seconds (default 480).
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-/tmp/out} PYTHON=${PYTHON:-python3} H200_BUDGET_S=${H200_BUDGET_S:-480}
mkdir -p "$OUT"

if [[ -z "${H200_INNER:-}" ]]; then  # the outer call: the budget, the log and the process logs
    WORK=/tmp/bench-gpu-throughput
    status=0
    H200_INNER=1 WORK=$WORK timeout --kill-after=15 "$H200_BUDGET_S" bash "$0" "$@" 2>&1 | tee "$OUT/h200.log" \
        || status=$?
    [[ -d $WORK ]] && (cd "$WORK" && find . -name '*.log' -o -name 'metrics.jsonl' -o -name 'config.yaml' \
        | tar czf "$OUT/bench-logs.tar.gz" -T -) || true
    echo "h200.sh: exit $status after $SECONDS s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
    exit "$status"
fi

export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache TORCH_EXTENSIONS_DIR=/tmp/torch-extensions
echo "== $(date -u +%FT%TZ) $(hostname)"
nvidia-smi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
echo "== wheels installed after $SECONDS s"
"$PYTHON" - <<'PY'
import importlib, sys, torch
print(f"python {sys.version.split()[0]} ({sys.executable}), torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
missing = []
for name, needed in (("plasticity_dist.cli", True), ("plasticity_dist.train.trainer", True), ("plasticity_dist.train.probe_run", True),
                     ("deepspeed", True), ("accelerate", True), ("transformers", True), ("webdataset", True),
                     ("zstandard", True), ("datasets", False)):  # datasets: hf: sources only, not this bench
    try:
        module = importlib.import_module(name)
        print(f"import {name}: ok {getattr(module, '__version__', '')} {getattr(module, '__file__', '')}")
    except Exception as error:
        print(f"import {name}: FAILED {type(error).__name__}: {error}")
        missing += [name] if needed else []
sys.exit(f"missing: {missing}" if missing else 0)
PY
echo "== imports checked after $SECONDS s"
"$PYTHON" bench/gpu_throughput.py --work "$WORK" --json-out "$OUT/gpu_throughput.json" \
    --budget $((H200_BUDGET_S - SECONDS - 30)) "$@"
