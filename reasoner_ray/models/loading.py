"""One way to get a model: a local HF folder, a hub id, or (when `model.path` is empty) the tiny model.

`resolve_model_path` turns the config into a path or hub id that both transformers and vLLM accept;
`load_model_and_processor` loads it with the Auto classes (any image-text-to-text family).
"""

from __future__ import annotations

from pathlib import Path

from reasoner_ray.core.config import Config


def resolve_model_path(config: Config) -> str:
    if config.model.path:
        return config.model.path
    from reasoner_ray.models.tiny import ensure_tiny_model

    cache = Path(config.model.cache_dir)
    return str(ensure_tiny_model(config.model.family, config.model.tiny, config.run.seed, cache))


def torch_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def load_model_and_processor(path: str, dtype: str = "auto"):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype(dtype))
    processor = AutoProcessor.from_pretrained(path)
    return model, processor
