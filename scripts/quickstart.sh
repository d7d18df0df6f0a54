#!/usr/bin/env bash
# The README's main command: set up the environment (idempotent), then run the main job on
# configs/quickstart.yaml (tiny Qwen2-VL, the arithmetic task, the local stand-in teacher). Extra arguments are
# config overrides.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/env.sh"
exec .venv/bin/python jobs/iterative_dpo.py --config configs/quickstart.yaml "$@"
