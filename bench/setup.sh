#!/usr/bin/env bash
# Set up the benchmark's own environment: Debian's nginx + wrk, and bench/.venv holding Ostraca
# and every peer (HF datasets, WebDataset, MosaicML Streaming, LitData) with torch pinned to the
# CPU build, so nothing here touches the project's own dependencies. Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        apt-get install -y -qq nginx-light wrk curl >/dev/null 2>&1 \
            || apt-get install -y -qq nginx wrk curl >/dev/null
    else
        echo "setup.sh: nginx and wrk are missing and we are not root; install them (Debian: nginx-light wrk)" >&2
        exit 1
    fi
fi

if [ -f "$VENV/.installed" ] && [ "$VENV/.installed" -nt "$0" ]; then
    # Ostraca itself is installed editable, so new modules in /work/main are picked up as they land.
    exit 0
fi

"$PY" -m venv "$VENV"
PIP="$VENV/bin/pip"
"$PIP" install -q --upgrade pip
CONSTRAINTS="$VENV/constraints.txt"
printf 'torch==%s\n' "$TORCH_VERSION" > "$CONSTRAINTS"

# torch first, CPU build, so nothing below can pull a CUDA build in.
"$PIP" install -q -c "$CONSTRAINTS" "torch==$TORCH_VERSION"
# Ostraca (editable: the bench always runs the code in this checkout).
"$PIP" install -q -c "$CONSTRAINTS" -e "$ROOT"
# Peers and tools.
"$PIP" install -q -c "$CONSTRAINTS" \
    "datasets" "aiohttp" "webdataset" "litdata" \
    "matplotlib" "psutil" "py-spy" "pyinstrument"
# MosaicML Streaming: --no-deps (its torchvision/numpy<2.2/cloud-SDK requirements would replace
# torch and numpy); then only what it imports for local MDS reading and writing. transformers
# is imported by streaming.base.dataloader (>=5 keeps huggingface_hub compatible with datasets).
"$PIP" install -q -c "$CONSTRAINTS" --no-deps "mosaicml-streaming==0.13.0"
"$PIP" install -q -c "$CONSTRAINTS" \
    "xxhash" "zstd" "Brotli" "python-snappy" "catalogue" "tqdm" "boto3" "paramiko" \
    "transformers>=5"
# PyPI's torchvision is a CUDA build: its _C.so needs libtorch_cuda, absent from the CPU torch,
# and `import torchvision` then fails. Nothing we measure needs it (litdata imports it lazily;
# the Streaming runner skips streaming.vision/multimodal), so it is removed.
"$PIP" uninstall -y -q torchvision || true
"$VENV/bin/python" - <<'PY'
import importlib
import sys
import types
for n in ("streaming.vision", "streaming.multimodal"):
    sys.modules[n] = types.ModuleType(n)
for m in ("torch", "pyarrow", "datasets", "webdataset", "litdata", "streaming", "ostraca.client"):
    importlib.import_module(m)
import torch
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
print("bench venv ok: torch", torch.__version__)
PY
touch "$VENV/.installed"
