#!/usr/bin/env bash
# The README's main command: set up the environment (idempotent), then run the main job on the embedded
# CPU default (tiny Qwen2-VL, easy-VQA, the local stand-in teacher). Extra arguments are config overrides.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
mkdir -p .tmp .cache
export TMPDIR="$root/.tmp" TORCH_EXTENSIONS_DIR="$root/.cache/torch_extensions" RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/python jobs/iterative_dpo.py --config configs/quickstart.yaml "$@"
