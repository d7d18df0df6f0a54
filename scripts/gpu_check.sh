#!/usr/bin/env bash
# The GPU path in one command: install the GPU build (needs PyPI), then run the tiny main job on this machine's
# GPUs (vLLM on CUDA, DeepSpeed bf16, the reference pass on the GPUs, DPO) and the endpoint, printing where each
# part ran and its figures (scripts/gpu_check.py). Aimed at under 10 minutes on one GPU.
#   bash scripts/gpu_check.sh [--workers 2] [key=value ...]     (--workers 2 exercises NCCL; needs 2 GPUs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! nvidia-smi -L 2>/dev/null | grep -q GPU; then
  echo "gpu_check: no GPU here (nvidia-smi -L lists none)" >&2
  exit 2
fi
export REASONER_BUILD=gpu
source "$root/scripts/env.sh"
exec .venv/bin/python scripts/gpu_check.py "$@"
