#!/usr/bin/env bash
# The README's test command: set up the environment (idempotent), then run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/core -k reward`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/env.sh"
status=0
.venv/bin/python -m pytest -p no:cacheprovider --timeout=900 --durations=15 "$@" || status=$?
# vLLM/torch processes killed by tests leak shared-memory segments: remove those no live process uses.
.venv/bin/python scripts/clean_shm.py | tail -n 1
exit $status
