#!/usr/bin/env bash
# The README's test command: set up the environment (idempotent), then run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/core -k reward`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
mkdir -p .tmp .cache
export TMPDIR="$root/.tmp" TORCH_EXTENSIONS_DIR="$root/.cache/torch_extensions" RAY_USAGE_STATS_ENABLED=0
shm_before=$(mktemp -p .tmp); ls /dev/shm > "$shm_before" 2>/dev/null || true
status=0
.venv/bin/python -m pytest -p no:cacheprovider --timeout=900 "$@" || status=$?
# vLLM/torch processes killed by tests can leak shared-memory segments: remove the ones this run created.
ls /dev/shm 2>/dev/null | grep -vxF -f "$shm_before" | while read -r seg; do rm -f "/dev/shm/$seg"; done || true
rm -f "$shm_before"
exit $status
