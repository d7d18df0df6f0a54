"""Convert a checkpoint in the original LLaVA training format (LLaVA-NeXT / LLaVA-1.6: `LlavaLlamaForCausalLM`,
model type `llava_llama`, as the paper's released SFT and DPO models are published) into a transformers
LLaVA-NeXT folder (`LlavaNextForConditionalGeneration`) that transformers' Auto classes and vLLM load.

    python jobs/convert_llava.py --src <original folder> --out <new folder> [--vision-tower <CLIP folder>]

Weights: `model.layers.*`, `model.embed_tokens`, `model.norm`, `lm_head` -> `language_model.*`;
`model.mm_projector.{0,2}` (mlp2x_gelu) -> `multi_modal_projector.linear_{1,2}`; `model.image_newline` ->
`image_newline`; `model.vision_tower.vision_tower.vision_model.*` -> `vision_tower.vision_model.*`. A checkpoint
without its vision tower takes it from `--vision-tower` (the CLIP folder `mm_vision_tower` names). Config:
the Llama fields, `image_grid_pinpoints`, `mm_vision_select_layer` -> `vision_feature_layer`,
`mm_vision_select_feature` patch/cls_patch -> `vision_feature_select_strategy` default/full. The tokenizer
gets an `<image>` token when it has none (the original code used the index -200), and the embedding rows for
it are the mean of the others. Chat template: the tokenizer's own when it renders an image part as `<image>`;
a plain Llama-3 template does not (the original code inserted the image itself), so a tokenizer with Llama-3's
turn tokens gets LLAMA3_LLAVA_TEMPLATE (Llama-3 turns, each image part as `<image>` and a newline, as the
paper's llama3 conversation format writes it), and any other needs `--chat-template <file>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IMAGE_TOKEN = "<image>"
SUPPORTED_PROJECTOR = "mlp2x_gelu"
LLAMA_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
              "rms_norm_eps", "rope_theta", "rope_scaling", "max_position_embeddings", "hidden_act", "attention_bias",
              "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings", "head_dim")


LLAMA3_LLAVA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


class ConversionError(ValueError):
    """The source is not a checkpoint this converter understands; the message says what is missing."""


def renders_image(tokenizer, template: str | None) -> bool:
    """Whether `template` turns a user message's image part into the `<image>` token."""
    if not template:
        return False
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    try:
        text = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                             tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render an image part does not render one
        return False
    return IMAGE_TOKEN in text


def llava_chat_template(tokenizer, given: str | None = None) -> str:
    """The converted model's chat template (see the module docstring); `given`: a template from the user."""
    for template in (given, tokenizer.chat_template):
        if renders_image(tokenizer, template):
            return template
    if given:
        raise ConversionError("the --chat-template given does not render an image part as <image>")
    if "<|start_header_id|>" in tokenizer.get_vocab():
        return LLAMA3_LLAVA_TEMPLATE
    raise ConversionError("the tokenizer's chat template does not render an image part as <image> and is not "
                          "Llama-3's: pass --chat-template <a Jinja file that does>")


def rename(key: str) -> str | None:
    """The LLaVA-NeXT name of an original LLaVA weight, or None for a weight with no counterpart."""
    rules = (("model.vision_tower.vision_tower.vision_model.", "vision_tower.vision_model."),
             ("model.mm_projector.0.", "multi_modal_projector.linear_1."),
             ("model.mm_projector.2.", "multi_modal_projector.linear_2."),
             ("model.image_newline", "image_newline"),
             ("lm_head.", "language_model.lm_head."),
             ("model.", "language_model.model."))
    for old, new in rules:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def _load_weights(folder: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(shard))
    for shard in sorted(folder.glob("pytorch_model*.bin")):
        tensors.update(torch.load(shard, map_location="cpu", weights_only=True))
    if not tensors:
        raise ConversionError(f"{folder}: no *.safetensors or pytorch_model*.bin weights")
    return tensors


def _vision_config(src_config: dict[str, Any], vision_tower: Path | None) -> dict[str, Any]:
    if vision_tower is not None:
        clip = json.loads((vision_tower / "config.json").read_text())
        vision = clip.get("vision_config", clip)
    elif "vision_config" in src_config:  # some exports keep it inline
        vision = src_config["vision_config"]
    else:
        raise ConversionError(f"the source names its vision tower {src_config.get('mm_vision_tower')!r} but does not "
                              "include its config: pass --vision-tower <that CLIP folder>")
    return {**{k: v for k, v in vision.items() if k not in ("architectures", "transformers_version")},
            "model_type": "clip_vision_model"}


def convert(src: str | Path, out: str | Path, vision_tower: str | Path | None = None,
            chat_template: str | None = None) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        LlavaNextConfig,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    from reasoner_ray.models.export import write_vllm_layout

    src, out = Path(src), Path(out)
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("mm_projector_type", SUPPORTED_PROJECTOR) != SUPPORTED_PROJECTOR:
        raise ConversionError(f"mm_projector_type {cfg['mm_projector_type']!r}: only {SUPPORTED_PROJECTOR} is converted")
    if "image_grid_pinpoints" not in cfg:
        raise ConversionError(f"{src}/config.json has no image_grid_pinpoints: not a LLaVA-NeXT (anyres) checkpoint")
    tower = Path(vision_tower) if vision_tower else None
    vision = _vision_config(cfg, tower)

    tokenizer = AutoTokenizer.from_pretrained(src)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.chat_template = llava_chat_template(tokenizer, chat_template)
    weights = {}
    for key, value in _load_weights(src).items():
        new = rename(key)
        if new is not None:
            weights[new] = value
    if not any(k.startswith("vision_tower.") for k in weights):
        if tower is None:
            raise ConversionError("the source holds no vision tower weights: pass --vision-tower <the CLIP folder>")
        weights.update({f"vision_tower.{k}": v for k, v in _load_weights(tower).items() if k.startswith("vision_model.")})
    missing = [k for k in ("image_newline", "multi_modal_projector.linear_1.weight", "language_model.lm_head.weight")
               if k not in weights]
    if missing:
        raise ConversionError(f"{src}: weights missing after renaming: {missing}")

    text = {k: cfg[k] for k in LLAMA_KEYS if k in cfg}
    vocab = max(len(tokenizer), weights["language_model.model.embed_tokens.weight"].shape[0])
    config = LlavaNextConfig(
        text_config={**text, "model_type": "llama", "vocab_size": vocab}, vision_config=vision,
        image_grid_pinpoints=cfg["image_grid_pinpoints"], vision_feature_layer=cfg.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="full" if cfg.get("mm_vision_select_feature") == "cls_patch" else "default",
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), tie_word_embeddings=False)
    for key in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):
        rows = weights[key]
        if rows.shape[0] < vocab:  # new tokens (<image>) start at the mean embedding
            weights[key] = torch.cat([rows, rows.mean(0, keepdim=True).expand(vocab - rows.shape[0], -1)])

    size = vision["image_size"]
    clip = CLIPImageProcessor.from_pretrained(tower) if tower and (tower / "preprocessor_config.json").is_file() else None
    norm = {"image_mean": clip.image_mean, "image_std": clip.image_std} if clip else {}
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                                image_grid_pinpoints=cfg["image_grid_pinpoints"], **norm),
        tokenizer=tokenizer, patch_size=vision["patch_size"],
        vision_feature_select_strategy=config.vision_feature_select_strategy, num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template)
    # The weights are written under the names of transformers' saved LLaVA-NeXT files (in vLLM's layout), and
    # from_pretrained maps them onto its modules; no 8B model is built in memory here.
    out.mkdir(parents=True, exist_ok=True)
    config.architectures = ["LlavaNextForConditionalGeneration"]
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in weights.items()}, out / "model.safetensors", metadata={"format": "pt"})
    processor.save_pretrained(out)
    write_vllm_layout(out)
    _check_names(config, out)  # fails here, not in a later stage, if a weight is missing or misnamed
    return out


def _check_names(config, out: Path) -> None:
    """The converted weight names must be exactly those a LLaVA-NeXT of the same layer counts saves: checked on
    a narrow copy of the config (hidden sizes of 16), so no 8B model is built."""
    import tempfile

    from safetensors import safe_open
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    from reasoner_ray.models.export import write_vllm_layout

    narrow = LlavaNextConfig(**{**config.to_dict(),
                                "text_config": {**config.text_config.to_dict(), "hidden_size": 16, "intermediate_size": 32,
                                                "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
                                                "vocab_size": 32, "pad_token_id": None, "bos_token_id": None,
                                                "eos_token_id": None},
                                "vision_config": {**config.vision_config.to_dict(), "hidden_size": 16,
                                                  "intermediate_size": 32, "num_attention_heads": 2,
                                                  "projection_dim": 16},
                                "image_token_index": 0})
    with tempfile.TemporaryDirectory() as tmp:
        LlavaNextForConditionalGeneration(narrow).save_pretrained(tmp)
        write_vllm_layout(tmp)
        with safe_open(str(Path(tmp) / "model.safetensors"), "pt") as fh:
            want = set(fh.keys())
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        got = set(fh.keys())
    if got != want:
        raise ConversionError(f"converted weights do not match LLaVA-NeXT's: missing {sorted(want - got)[:5]}, "
                              f"unexpected {sorted(got - want)[:5]}")
