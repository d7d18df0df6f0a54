"""Rendering chat messages to model text, one implementation: the model processor's own chat template.

Rollouts and evaluation (the vLLM engines), training and the reference pass (train/collate.py) and the endpoint
(serve/engine.py) all render through here, so a prompt is the same text, and the same token ids, everywhere: the
DPO reference log-probs taken from the rollouts rely on it (train/reference.py compares the ids). A tokenizer's
own template is not used: a model's processor may carry another (Llama-3 LLaVA-NeXT's tokenizer template renders
no image token, its processor's does).
"""

from __future__ import annotations

from typing import Any


def load_processor(model_path: str):
    """The processor of a model folder (a LoRA adapter's folder: its base model's)."""
    from transformers import AutoProcessor

    from reasoner_ray.models.loading import base_model_path

    return AutoProcessor.from_pretrained(base_model_path(model_path))


def render_prompt(processor, messages: list[dict[str, Any]]) -> str:
    """The prompt text a model completes: the messages and the template's generation prompt."""
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def render_conversation(processor, messages: list[dict[str, Any]]) -> str:
    """A whole conversation (the assistant's turn included), as training reads it."""
    return processor.apply_chat_template(messages, tokenize=False)
