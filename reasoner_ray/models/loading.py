"""One way to get a model: a local HF folder, a hub id, or (when `model.path` is empty) the tiny model.

`resolve_model_path` turns the config into a path or hub id that both transformers and vLLM accept;
`resolve_dtype` is the one rule for `auto` (bf16 on a GPU, fp32 on CPU) that training, the engines and the
endpoint share; `load_model_and_processor` loads a folder with the Auto classes (any image-text-to-text family),
and `load_model` also a LoRA adapter's folder, as its base model when it serves as a reference;
`model_fingerprint` tells two model folders apart by content (what an evaluation's results are keyed by).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_WHOLE_FILE = 64 << 20  # files up to this size are hashed whole; larger ones (weights) by spread-out chunks
_CHUNKS, _CHUNK = 64, 64 << 10

from reasoner_ray.core.config import Config


def resolve_model_path(config: Config) -> str:
    if config.model.path:
        return config.model.path
    from reasoner_ray.models.tiny import ensure_tiny_model

    cache = Path(config.model.cache_dir)
    return str(ensure_tiny_model(config.model.family, config.model.tiny, config.run.seed, cache))


def model_fingerprint(path: str) -> str:
    """A content hash of a model folder (a hub id or missing folder hashes its name): every file's relative name
    and size, small files whole, weight files by 64 chunks of 64 KiB spread over them. Two trainings of one
    model differ in every weight, so sampled chunks tell them apart without reading 16 GB."""
    folder = Path(path)
    digest = hashlib.sha256()
    if not folder.is_dir():
        digest.update(str(path).encode())
        return digest.hexdigest()[:16]
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(folder)}:{size}\n".encode())
        with file.open("rb") as fh:
            if size <= _WHOLE_FILE:
                digest.update(fh.read())
                continue
            for i in range(_CHUNKS):
                fh.seek(i * (size - _CHUNK) // (_CHUNKS - 1), os.SEEK_SET)
                digest.update(fh.read(_CHUNK))
    return digest.hexdigest()[:16]


def resolve_dtype(name: str, cuda: bool) -> str:
    """`model.dtype` (or `serve.dtype`) as a dtype name: `auto` is bfloat16 on a GPU, float32 on CPU (this CPU
    has no fast bf16, and the reference pass, the engines and the policy must compute in one dtype)."""
    if name == "auto":
        return "bfloat16" if cuda else "float32"
    return name


def torch_dtype(name: str):
    import torch

    return getattr(torch, resolve_dtype(name, torch.cuda.is_available()))


def load_model_and_processor(path: str, dtype: str = "auto"):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype(dtype))
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


def base_model_path(path: str) -> str:
    """The folder holding the processor: a LoRA adapter's base model, else the folder itself."""
    adapter = Path(path) / "adapter_config.json"
    if adapter.is_file():
        import json

        return json.loads(adapter.read_text())["base_model_name_or_path"]
    return path


def load_model(path: str, dtype: str = "auto", as_reference: bool = False):
    """(model, processor, context): a model folder, or a LoRA adapter's folder (peft) on its base model. With
    `as_reference`, `context()` switches an adapter off (a reference is the base model the adapter trained from);
    otherwise it does nothing."""
    import contextlib

    if (Path(path) / "adapter_config.json").is_file():
        from peft import PeftModel

        model, processor = load_model_and_processor(base_model_path(path), dtype)
        model = PeftModel.from_pretrained(model, path)
        return model, processor, (model.disable_adapter if as_reference else contextlib.nullcontext)
    model, processor = load_model_and_processor(path, dtype)
    return model, processor, contextlib.nullcontext
