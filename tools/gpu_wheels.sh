#!/usr/bin/env bash
# Wheels the H200 device machine lacks for `plasticity-dist train/probe/preprocess` (synthetic data), into .whl/:
# Python 3.12 manylinux x86_64 builds at the versions of our .venv. deepspeed is an sdist: its wheel is built
# here without ops (DS_BUILD_OPS=0: pure Python; an op is JIT-built at first use there, which has nvcc and ninja).
# The machine already has torch, accelerate, transformers, numpy, pyyaml, rich, safetensors, tokenizers, scipy,
# matplotlib, pyarrow, pandas, psutil, msgpack, ninja, py-cpuinfo, einops, tqdm, xxhash, fsspec, huggingface-hub,
# requests, packaging, filelock (see /work/.library/device/KINDS.md). Usage, from the repo root:
#   bash tools/gpu_wheels.sh        then, on the GPU machine: bash bench/h200.sh (with .whl carried)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=.whl
# deepspeed's runtime needs beyond the machine's: hjson, pydantic (+ core, annotated-types, typing-inspection,
# and typing-extensions >= 4.16, which pydantic-core asks for); shards: zstandard; verify/eval: webdataset
# (+ braceexpand); hf: sources: datasets (+ dill, multiprocess).
BINARY=(hjson pydantic pydantic_core annotated_types typing_inspection typing_extensions zstandard webdataset
        braceexpand datasets dill multiprocess)

quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }  # a local index this pip config names
version() { "$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

rm -rf "$OUT" && mkdir -p "$OUT"
for name in "${BINARY[@]}"; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$OUT" "$name==$(version "$name")" 2>&1 | quiet
done
DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --no-deps --wheel-dir "$OUT" "deepspeed==$(version deepspeed)" 2>&1 | quiet
ls "$OUT"/deepspeed-*-py3-none-any.whl >/dev/null || { echo "deepspeed did not build as a py3-none-any wheel" >&2; exit 1; }

# every non-extra requirement of a carried wheel is carried too or already on the machine
ON_MACHINE="torch numpy pyyaml packaging psutil msgpack ninja py-cpuinfo einops tqdm filelock pyarrow pandas xxhash
            fsspec huggingface-hub requests"
"$PYTHON" - "$OUT" "$ON_MACHINE" <<'PY'
import re, sys, zipfile
from pathlib import Path
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
wheels = sorted(Path(sys.argv[1]).glob("*.whl"))
carried = {norm(w.name.split("-")[0]) for w in wheels}
available = carried | {norm(n) for n in sys.argv[2].split()}
missing = []
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            name = norm(re.match(r"[A-Za-z0-9_.-]+", line.split(":", 1)[1].strip()).group())
            if name not in available:
                missing.append(f"{wheel.name} needs {name}")
print("\n".join(missing) or "every requirement of the wheels is carried or on the machine")
sys.exit(1 if missing else 0)
PY
ls -1 "$OUT"
echo "total: $(du -cb "$OUT"/*.whl | tail -1 | awk '{printf "%.1f MiB", $1 / 1048576}')"
