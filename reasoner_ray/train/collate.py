"""VLM collation through the model's own processor and chat template; loss only on assistant tokens.

The prompt (user turn with its image, plus the generation prompt) is rendered with the chat template and run
through the processor, so every processor output (pixel_values, image_grid_thw, mm_token_type_ids, ...)
reaches the model. The completion is the rest of the rendered conversation after the prompt (the response and
the template's end-of-turn tokens), tokenized on its own. Only completion tokens carry loss. An encoder with
`turn_tail=False` ends a completion at its first special token, the end-of-turn token a sampling engine stops
on: the template's tokens after it (Qwen's newline) are never sampled, so their log-probs are not known.
A preference chain cut by `pairs.truncate_words` stops at its last word: it never ended its turn there, and an
end-of-turn token after the cut would teach the model to stop mid-sentence.

A prompt that does not fit `max_length` (with at least one completion token) is never cut: the row is
filtered before training and counted (`prompt_too_long`); an over-long completion is cut at its end.

Output keys that are per token (same shape as input_ids, e.g. mm_token_type_ids) are padded with the sequence;
all other processor outputs (pixel_values, image_grid_thw, ...) are concatenated along their first dim.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from reasoner_ray.core.prompts import assistant_message
from reasoner_ray.data.images import open_image
from reasoner_ray.models.chat import render_conversation, render_prompt

IGNORE_INDEX = -100


class VLMEncoder:
    """Renders and tokenizes prompts/completions with one processor (picklable: holds only the processor)."""

    def __init__(self, processor, turn_tail: bool = True):
        self.processor = processor
        self.turn_tail = turn_tail
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._special_ids = frozenset(tok.all_special_ids)

    def prompt_text(self, messages: list[dict[str, Any]]) -> str:
        return render_prompt(self.processor, messages)

    def completion_ids(self, messages: list[dict[str, Any]], response: str, end_turn: bool = True) -> list[int]:
        """Token ids of the assistant turn; `end_turn=False` keeps only the response text (a truncated chain)."""
        prompt = self.prompt_text(messages)
        full = render_conversation(self.processor, messages + [assistant_message(response)])
        if not full.startswith(prompt):
            raise ValueError("chat template does not render the prompt as a prefix of the conversation")
        completion = full[len(prompt):]
        if not end_turn:
            end = completion.find(response)
            if end < 0:
                raise ValueError("chat template does not render the response text verbatim")
            completion = completion[:end + len(response)]
        ids = self.processor.tokenizer(completion, add_special_tokens=False)["input_ids"]
        if end_turn and not self.turn_tail:
            # The first special token after the response starts (a template may open the turn with one).
            started = next((i for i, t in enumerate(ids) if t not in self._special_ids), len(ids))
            stop = next((i for i in range(started, len(ids)) if ids[i] in self._special_ids), None)
            ids = ids if stop is None else ids[:stop + 1]
        return ids

    def encode_prompts(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Processor outputs for the prompts, right-padded (B, P); images in example order."""
        import torch

        texts = [self.prompt_text(ex["messages"]) for ex in examples]
        images = [[open_image(ex["image"])] for ex in examples]  # one list per prompt: Gemma 3 needs the nesting
        out = self.processor(text=texts, images=images, padding=True, padding_side="right",
                             return_tensors="pt", add_special_tokens=False)
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def fit_filter(encoder: VLMEncoder, examples: list[dict[str, Any]], max_length: int, counts: Counter) -> list[dict[str, Any]]:
    """Drop (and count) examples whose prompt leaves no room for a completion token within max_length; the kept
    ones carry their `prompt_length` in tokens and the `prompt_digest` of those tokens (rows.prompt_digest)."""
    from reasoner_ray.core.rows import prompt_digest

    kept = []
    for ex in examples:
        prompt = encoder.encode_prompts([ex])
        length = int(prompt["attention_mask"].sum())
        if length >= max_length:
            counts["prompt_too_long"] += 1
        else:
            digest = prompt_digest(prompt["input_ids"][0, :length].tolist())
            kept.append({**ex, "prompt_length": length, "prompt_digest": digest})
    return kept


def is_per_token(key: str, value, input_ids) -> bool:
    return key not in ("input_ids", "attention_mask") and value.dim() == 2 and value.shape == input_ids.shape


def _pad_rows(rows: list[list[int]], value: int, device=None):
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def concat_sequences(prompts: dict[str, Any], completions: list[list[int]], pad_id: int) -> dict[str, Any]:
    """Full rows [real prompt tokens, completion tokens, right padding]; row i uses prompt i.

    Returns model inputs plus `completion_mask` (1 on completion tokens), on the prompts' device. Non-per-token
    outputs (pixel_values, image_grid_thw) pass through: they already hold one image per prompt row, in row order.
    """
    ids, mask = prompts["input_ids"], prompts["attention_mask"]
    lengths = mask.sum(1).tolist()
    seqs, comp, per_token = [], [], {k: [] for k, v in prompts.items() if is_per_token(k, v, ids)}
    for row, completion in enumerate(completions):
        p, n = row, lengths[row]
        seqs.append(ids[p, :n].tolist() + completion)
        comp.append([0] * n + [1] * len(completion))
        for k in per_token:
            per_token[k].append(prompts[k][p, :n].tolist() + [0] * len(completion))
    device = ids.device  # the training and reference paths call this on batches already on the model's device
    batch = {"input_ids": _pad_rows(seqs, pad_id, device),
             "attention_mask": _pad_rows([[1] * len(s) for s in seqs], 0, device),
             "completion_mask": _pad_rows(comp, 0, device)}
    batch.update({k: _pad_rows(v, 0, device) for k, v in per_token.items()})
    for k, v in prompts.items():
        if k not in batch and k not in ("input_ids", "attention_mask"):
            batch[k] = v
    return batch


def collate_sft(encoder: VLMEncoder, examples: list[dict[str, Any]], max_length: int) -> dict[str, Any]:
    """Model inputs + `labels` (-100 everywhere but the assistant tokens)."""
    prompts = encoder.encode_prompts(examples)
    room = [max_length - int(n) for n in prompts["attention_mask"].sum(1)]
    completions = [encoder.completion_ids(ex["messages"], ex["response"])[:r] for ex, r in zip(examples, room)]
    batch = concat_sequences(prompts, completions, encoder.pad_id)
    batch["labels"] = batch["input_ids"].masked_fill(batch.pop("completion_mask") == 0, IGNORE_INDEX)
    return batch


def collate_pairs(encoder: VLMEncoder, examples: list[dict[str, Any]], max_length: int) -> dict[str, Any]:
    """Prompts once per pair (B, P) + completions interleaved (chosen_0, rejected_0, chosen_1, ...) (2B, C)."""
    import torch

    prompts = encoder.encode_prompts(examples)
    room = [max_length - int(n) for n in prompts["attention_mask"].sum(1)]
    completions = []
    for ex, r in zip(examples, room):
        for side in ("chosen", "rejected"):
            ends = not ex.get(f"{side}_truncated", False)
            completions.append(encoder.completion_ids(ex["messages"], ex[side], end_turn=ends)[:r])
    batch = {"prompt": prompts, "completions": completions,
             "completion_ids": _pad_rows(completions, encoder.pad_id),
             "completion_mask": _pad_rows([[1] * len(c) for c in completions], 0)}
    if all(ex.get("ref_chosen_logp") is not None for ex in examples):
        batch["ref_chosen_logps"] = torch.tensor([float(ex["ref_chosen_logp"]) for ex in examples], dtype=torch.float64)
        batch["ref_rejected_logps"] = torch.tensor([float(ex["ref_rejected_logp"]) for ex in examples], dtype=torch.float64)
    return batch


def on_model_device(batch: dict[str, Any], model) -> dict[str, Any]:
    """`batch` with every tensor in it (at any depth of mappings: a pair batch's prompt is one) on the model's
    device: batches are collated on the CPU and the model may live on a GPU, where a CPU tensor reaching it fails.
    Lists (token ids) stay as they are. A DeepSpeed engine names its device (under ZeRO-3 offload its parameters
    sit on the CPU while it computes on the GPU)."""
    device = getattr(model, "device", None) or next(model.parameters()).device
    return _moved(batch, device)


def _moved(value: Any, device) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _moved(v, device) for k, v in value.items()}
    return value
