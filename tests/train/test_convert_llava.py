"""The original LLaVA training format -> transformers LLaVA-NeXT: the tiny LLaVA-NeXT written in the original
layout (LlavaLlamaForCausalLM names, llava_llama config, the CLIP tower named by path) converts back to a folder
whose logits on an image prompt equal the tiny model's; a missing vision tower config is named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _to_original(key: str) -> str:
    for new, old in (("vision_tower.vision_model.", "model.vision_tower.vision_tower.vision_model."),
                     ("multi_modal_projector.linear_1.", "model.mm_projector.0."),
                     ("multi_modal_projector.linear_2.", "model.mm_projector.2."),
                     ("image_newline", "model.image_newline"), ("language_model.lm_head.", "lm_head."),
                     ("language_model.model.", "model.")):
        if key.startswith(new):
            return old + key[len(new):]
    raise AssertionError(key)


def _write_original(tiny: Path, out: Path) -> Path:
    """The tiny LLaVA-NeXT as the LLaVA repository saves it, and a CLIP folder for its tower's config."""
    from safetensors.torch import load_file, save_file
    from transformers import CLIPImageProcessor

    config = json.loads((tiny / "config.json").read_text())
    text = config["text_config"]
    original = {"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "mm_projector_type": "mlp2x_gelu",
                "mm_vision_tower": "clip", "mm_vision_select_layer": config["vision_feature_layer"],
                "mm_vision_select_feature": "patch", "mm_hidden_size": config["vision_config"]["hidden_size"],
                "image_aspect_ratio": "anyres", "mm_patch_merge_type": "spatial_unpad",
                "image_grid_pinpoints": config["image_grid_pinpoints"],
                **{k: text[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                                        "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "vocab_size",
                                        "eos_token_id", "pad_token_id")}}
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(original))
    save_file({_to_original(k): v for k, v in load_file(tiny / "model.safetensors").items()}, out / "model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny / name).exists():
            shutil.copy(tiny / name, out / name)
    clip = out.parent / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps({**config["vision_config"], "model_type": "clip_vision_model"}))
    CLIPImageProcessor().save_pretrained(clip)
    return clip


def _logits(path: str):
    from PIL import Image

    from reasoner_ray.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what shape is it?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.new("RGB", (100, 60), (200, 30, 30))], return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**inputs).logits


def test_original_llava_next_checkpoint_converts_to_the_same_model(tiny_llava_next, tmp_path):
    clip = _write_original(Path(tiny_llava_next), tmp_path / "original")
    run = subprocess.run([sys.executable, "jobs/convert_llava.py", "--src", str(tmp_path / "original"),
                          "--out", str(tmp_path / "hf"), "--vision-tower", str(clip)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    converted = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert converted["model_type"] == "llava_next" and converted["architectures"] == ["LlavaNextForConditionalGeneration"]
    torch.testing.assert_close(_logits(str(tmp_path / "hf")), _logits(tiny_llava_next))

    missing = subprocess.run([sys.executable, "jobs/convert_llava.py", "--src", str(tmp_path / "original"),
                              "--out", str(tmp_path / "again")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert "pass --vision-tower" in missing.stderr.strip().splitlines()[-1]


def test_a_chat_template_that_renders_no_image_is_replaced():
    """A plain Llama-3 template renders the image part as nothing: the converted model would never see its image.
    A Llama-3 tokenizer gets Llama-3 turns with <image>; any other such tokenizer must be given a template."""
    from reasoner_ray.models.convert_llava import ConversionError, LLAMA3_LLAVA_TEMPLATE, llava_chat_template
    from reasoner_ray.models.tokenizer import train_tokenizer

    text_only = ("{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
                 "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
                 "{% endfor %}<|eot_id|>{% endfor %}")
    tokenizer = train_tokenizer(["a llama reads the image"], 300, "llava_next")
    tokenizer.chat_template = text_only
    with pytest.raises(ConversionError, match="pass --chat-template"):
        llava_chat_template(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    template = llava_chat_template(tokenizer)
    assert template == LLAMA3_LLAVA_TEMPLATE
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what shape?"}]}]
    rendered = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True, tokenize=False)
    assert "<|start_header_id|>user<|end_header_id|>\n\n<image>\nwhat shape?<|eot_id|>" in rendered
    assert rendered.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    tokenizer.chat_template = template  # a template that renders the image is kept as it is
    assert llava_chat_template(tokenizer) == template
