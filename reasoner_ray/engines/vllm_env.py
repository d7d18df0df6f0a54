"""Process environment vLLM needs on this stack, set before `import vllm` in whatever process builds an engine.

On CPU, vLLM sizes its KV cache from VLLM_CPU_KVCACHE_SPACE (GiB) and refuses to start without it (it only
counts NUMA node 0's memory). Its zmq sockets go to $TMPDIR and its compile caches to ~/.cache: both are
pointed inside the project (`.cache/`, `.tmp/`) so runs leave nothing behind elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from reasoner_ray.paths import project_dirs


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def device_engine_args(cuda: bool) -> dict:
    """Engine arguments every vLLM engine of the project gets on its device kind. On CPU a chunked prefill (a
    step's prompts over the engine's token budget, 4,096 by default) discards that step's samples and rewinds the
    request's seeded generator, which CPU torch generators cannot do ("CPU Generator does not use offset"): the
    engine dies. So prompts are prefilled whole there."""
    return {} if cuda else {"enable_chunked_prefill": False}


def vllm_process_env(kv_cache_gib: float) -> dict[str, str]:
    dirs = project_dirs()
    env = {
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, int(round(kv_cache_gib)))),
        "VLLM_CACHE_ROOT": f"{dirs['cache']}/vllm",
        "TORCHINDUCTOR_CACHE_DIR": f"{dirs['cache']}/torchinductor",
        "TRITON_CACHE_DIR": f"{dirs['cache']}/triton",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TMPDIR": dirs["tmp"],
        "TOKENIZERS_PARALLELISM": "false",
    }
    return env


def apply_vllm_env(kv_cache_gib: float) -> None:
    for key, value in vllm_process_env(kv_cache_gib).items():
        os.environ.setdefault(key, value)
    Path(os.environ["TMPDIR"]).mkdir(parents=True, exist_ok=True)
