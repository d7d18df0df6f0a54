#!/usr/bin/env bash
# The README's test command: set up the environment (idempotent), then run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/core -k reward`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
mkdir -p .tmp .cache
export TMPDIR="$root/.tmp" TORCH_EXTENSIONS_DIR="$root/.cache/torch_extensions" RAY_USAGE_STATS_ENABLED=0
status=0
.venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=15 "$@" || status=$?
# vLLM/torch processes killed by tests leak shared-memory segments: remove those no live process uses.
.venv/bin/python scripts/clean_shm.py | tail -n 1
exit $status
