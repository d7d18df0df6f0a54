"""Shared fixtures: the tiny models (built once, cached under models/), a local Ray, project-local temp dirs.

Caches and temporary files of vLLM, torch, Ray and HF are pointed inside the project's ignored folders
(.cache/, .tmp/) before any engine is imported, so a test run leaves nothing behind elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reasoner_ray.models.tiny import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("REASONER_CACHE_ROOT", str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
(ROOT / ".tmp").mkdir(exist_ok=True)


def _tiny(family: str, cache: Path) -> str:
    """The default-size tiny model of `family` (built once, then read from the cache)."""
    from reasoner_ray.core.config import TinyModelConfig
    from reasoner_ray.models.tiny import ensure_tiny_model

    return str(ensure_tiny_model(family, TinyModelConfig(), 0, cache))


@pytest.fixture(scope="session")
def tiny_model_cache() -> Path:
    return ROOT / "models"


def _tiny_fixture(family: str):
    @pytest.fixture(scope="session", name=f"tiny_{family}")
    def tiny(tiny_model_cache) -> str:
        return _tiny(family, tiny_model_cache)

    return tiny


# One session fixture per family, `tiny_<family>` (e.g. tiny_qwen2_vl, tiny_llava_next), from the family registry.
for _family in FAMILIES:
    globals()[f"tiny_{_family}"] = _tiny_fixture(_family)


@pytest.fixture(scope="session")
def ray_local():
    """One in-process local Ray for the session (2 CPUs, like the machine)."""
    import ray

    from reasoner_ray.ray_utils import init_ray

    init_ray(num_cpus=2)
    yield ray
    ray.shutdown()
