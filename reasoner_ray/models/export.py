"""Write HF model folders in the key layout that vLLM loads (and transformers reads back)."""

from __future__ import annotations

import json
from pathlib import Path


def write_vllm_layout(folder: str | Path) -> None:
    """Rename the tower keys of LLaVA, LLaVA-NeXT (CLIP) and Gemma 3 (SigLIP) `vision_tower.X` ->
    `vision_tower.vision_model.X` in place.

    transformers 5.19 saves these towers without the `vision_model.` level; vLLM 0.32 expects it (as do the
    released checkpoints). Other families are saved in a layout vLLM already reads: a no-op for them.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") not in ("llava", "llava_next", "gemma3"):
        return
    from safetensors.torch import load_file, save_file

    for shard in sorted(folder.glob("*.safetensors")):
        tensors = load_file(shard)
        renamed = {_vllm_key(k): v for k, v in tensors.items()}
        if renamed.keys() != tensors.keys():
            save_file(renamed, shard, metadata={"format": "pt"})
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {_vllm_key(k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))


def _vllm_key(key: str) -> str:
    for prefix in ("model.vision_tower.", "vision_tower."):
        if key.startswith(prefix) and not key.startswith(prefix + "vision_model."):
            return prefix + "vision_model." + key[len(prefix):]
    return key
