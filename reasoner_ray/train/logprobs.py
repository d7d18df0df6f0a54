"""Per-sequence log-probs of completions, and the three layouts that compute them for preference pairs.

`sequence_logps` is the pure piece: sum over masked positions of log softmax(logits)[target].

For a pair, both responses share the image and the prompt (`pair_logps(..., layout)`, PAIR_LAYOUTS):
    full    prompt + response as one right-padded row per response (TRL's layout)
    shared  the prompts (with their images) once per pair as right-padded rows, their KV cache repeated for the
            two responses, then only the response tokens on top of it
    packed  as shared without a pad token: the micro-batch's prompts as one row under a block-diagonal causal
            mask, then its responses as one row over that cache whose mask lets each response see its own
            prompt and its own earlier tokens
All three give the same numbers up to float rounding; gradients flow through the cache into the prompt pass.
shared and packed need the KV cache, so they are off under gradient checkpointing. The packed masks are dense
(no variable-length attention kernel on CPU): each layer's attention spans the whole row, which cost back what
the pads saved here (benchmarks/bench_dpo_packing.py), so `dpo.pack_pairs` is off by default. Every layout
asks the model for logits only at positions that predict a response token (`logits_to_keep`): the LM head
over a 150K vocabulary on every image and prompt token is work whose result was thrown away.

Positions are explicit in shared and packed (holes after right-padded prompts; sequences restart in a pack),
from each response's full row: a registry maps the model type to its position-id builder (Qwen2-VL's M-RoPE
index, else a running count).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reasoner_ray.train.collate import concat_sequences, is_per_token


def token_logps(logits, targets):
    """log softmax(logits[n,t])[targets[n,t]] -> (N,T). logits (N,T,V) aligned with targets."""
    import torch

    logits = logits.float()
    picked = torch.gather(logits, -1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def sequence_logps(logits, targets, mask):
    """sum_t mask[n,t] * log softmax(logits[n,t])[targets[n,t]]  -> (N,). logits (N,T,V) aligned with targets."""
    return (token_logps(logits, targets) * mask).sum(-1)


def _shifted(logits, input_ids, completion_mask):
    """(logits, targets, mask) aligned so that logit t predicts token t+1; `logits` may hold only the last K
    positions of the rows (a forward with `logits_to_keep=K`)."""
    start = input_ids.shape[1] - logits.shape[1]
    return logits[:, :-1], input_ids[:, start + 1:], completion_mask[:, start + 1:]


def shifted_logps(logits, input_ids, completion_mask):
    """Summed log-probs of the completion tokens of full sequences -> (N,)."""
    return sequence_logps(*_shifted(logits, input_ids, completion_mask))


def shifted_token_logps(logits, input_ids, completion_mask) -> list[list[float]]:
    """Each row's completion tokens' log-probs, in order (a list per row)."""
    logits, targets, mask = _shifted(logits, input_ids, completion_mask)
    per_token = token_logps(logits, targets)
    return [row[m.bool()].tolist() for row, m in zip(per_token, mask)]


def completion_logits_to_keep(attention_mask, completion_mask) -> int:
    """How many last positions of right-padded [prompt, completion] rows predict a completion token: the LM head
    need not run on the rest (a prompt's image and text tokens), whose logits would be thrown away."""
    first = int((completion_mask.long().argmax(1)).min())  # the earliest completion token of any row
    return attention_mask.shape[1] - max(first - 1, 0)


def _running_positions(model, input_ids, attention_mask, extras):
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


def _mrope_positions(model, input_ids, attention_mask, extras):
    owner = next(m for m in model.modules() if hasattr(m, "get_rope_index"))
    positions, _ = owner.get_rope_index(input_ids, mm_token_type_ids=extras["mm_token_type_ids"],
                                        image_grid_thw=extras.get("image_grid_thw"), attention_mask=attention_mask)
    return positions


PositionBuilder = Callable[[Any, Any, Any, dict], Any]
POSITION_BUILDERS: dict[str, PositionBuilder] = {"qwen2_vl": _mrope_positions, "qwen2_5_vl": _mrope_positions,
                                                 "qwen3_vl": _mrope_positions}


def position_builder(model) -> PositionBuilder:
    config = getattr(model, "config", None)
    return POSITION_BUILDERS.get(getattr(config, "model_type", ""), _running_positions)


def unwrap(model):
    """The HF module under a DeepSpeed engine (which forwards calls but hides `.config`)."""
    return getattr(model, "module", model)


def _full_pair_logps(model, batch: dict[str, Any], pad_id: int):
    import torch

    completions = batch["completions"]
    reordered = completions[0::2] + completions[1::2]  # [chosen..., rejected...] like TRL
    # row i of `reordered` uses prompt i % B: build as repeat=1 over a doubled prompt batch
    prompts = {k: torch.cat([v, v], 0) for k, v in batch["prompt"].items()}
    full = concat_sequences(prompts, reordered, pad_id)
    mask = full.pop("completion_mask")
    out = model(**full, use_cache=False, logits_to_keep=completion_logits_to_keep(full["attention_mask"], mask))
    logps = shifted_logps(out.logits, full["input_ids"], mask)
    return logps.chunk(2)


def _pair_positions(model, batch: dict[str, Any]):
    """Positions of every response's full row [right-padded prompt, response] (2B, P + C), and the prompt's
    extra processor outputs; the prompt pass takes the chosen rows' prefix."""
    import torch

    prompt, comp_ids, comp_mask = batch["prompt"], batch["completion_ids"], batch["completion_mask"]
    p_ids, p_mask = prompt["input_ids"], prompt["attention_mask"]
    extras = {k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask")}
    full_ids = torch.cat([p_ids.repeat_interleave(2, 0), comp_ids], 1)
    full_mask = torch.cat([p_mask.repeat_interleave(2, 0), comp_mask], 1)
    full_extras = {k: (torch.cat([v.repeat_interleave(2, 0), torch.zeros_like(comp_ids)], 1) if is_per_token(k, v, p_ids)
                       else v.repeat_interleave(2, 0)) for k, v in extras.items() if k != "pixel_values"}
    positions = position_builder(unwrap(model))(unwrap(model), full_ids, full_mask, full_extras)
    return positions, extras, full_mask


def _shared_pair_logps(model, batch: dict[str, Any], pad_id: int):
    import torch

    prompt, comp_ids, comp_mask = batch["prompt"], batch["completion_ids"], batch["completion_mask"]
    p_ids, p_mask = prompt["input_ids"], prompt["attention_mask"]
    width = p_ids.shape[1]
    positions, extras, full_mask = _pair_positions(model, batch)
    last = p_mask.sum(1) - 1
    # The LM head runs only on the prompts' last positions (each row's last real token predicts its first
    # response token); the other prompt positions' logits would be thrown away.
    keep, which = torch.unique(last, return_inverse=True)
    prompt_out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=positions[..., 0::2, :width],
                       use_cache=True, logits_to_keep=keep, **extras)
    cache = prompt_out.past_key_values
    cache.batch_repeat_interleave(2)
    first_logits = prompt_out.logits[torch.arange(p_ids.shape[0]), which].repeat_interleave(2, 0)
    comp_out = model(input_ids=comp_ids, attention_mask=full_mask, position_ids=positions[..., width:],
                     past_key_values=cache, use_cache=True)
    logits = torch.cat([first_logits.unsqueeze(1), comp_out.logits[:, :-1]], 1)
    logps = sequence_logps(logits, comp_ids, comp_mask)
    return logps[0::2], logps[1::2]


def _packed_pair_logps(model, batch: dict[str, Any], pad_id: int):
    import torch

    prompt, comp_ids, comp_mask = batch["prompt"], batch["completion_ids"], batch["completion_mask"]
    p_ids, p_mask = prompt["input_ids"], prompt["attention_mask"]
    width, n_pairs = p_ids.shape[1], p_ids.shape[0]
    positions, extras, _ = _pair_positions(model, batch)
    p_len, c_len = p_mask.sum(1), comp_mask.sum(1)
    p_real, c_real = p_mask.bool(), comp_mask.bool()
    # One row of every prompt's real tokens; each token sees the earlier tokens of its own prompt only.
    p_seq = torch.repeat_interleave(torch.arange(n_pairs, device=p_ids.device), p_len)
    p_causal = torch.ones(len(p_seq), len(p_seq), dtype=torch.bool, device=p_ids.device).tril()
    packed_extras = {k: v[p_real][None] if is_per_token(k, v, p_ids) else v for k, v in extras.items()}
    prompt_out = model(input_ids=p_ids[p_real][None], attention_mask=((p_seq[:, None] == p_seq[None]) & p_causal)[None, None],
                       position_ids=positions[..., 0::2, :width][..., p_real][..., None, :], use_cache=True,
                       logits_to_keep=p_len.cumsum(0) - 1, **packed_extras)
    # One row of every response's tokens over that cache: each sees its own prompt and its own earlier tokens.
    c_seq = torch.repeat_interleave(torch.arange(2 * n_pairs, device=p_ids.device), c_len)
    c_causal = torch.ones(len(c_seq), len(c_seq), dtype=torch.bool, device=p_ids.device).tril()
    sees = torch.cat([(c_seq[:, None] // 2) == p_seq[None], (c_seq[:, None] == c_seq[None]) & c_causal], 1)
    tokens = comp_ids[c_real]
    comp_out = model(input_ids=tokens[None], attention_mask=sees[None, None],
                     position_ids=positions[..., width:][..., c_real][..., None, :],
                     past_key_values=prompt_out.past_key_values, use_cache=True)
    # A response's first token is predicted by its prompt's last position, every other one by the token before.
    starts = torch.cat([c_len.new_zeros(1), c_len.cumsum(0)[:-1]])
    first = torch.log_softmax(prompt_out.logits[0].float(), -1)[c_seq[starts] // 2, tokens[starts]]
    inner = torch.ones_like(tokens, dtype=torch.bool)
    inner[starts] = False
    rest = torch.log_softmax(comp_out.logits[0, :-1].float(), -1).gather(-1, tokens[1:, None]).squeeze(-1)
    logps = first.index_add(0, c_seq[inner], rest[inner[1:]])
    return logps[0::2], logps[1::2]


PAIR_LAYOUTS: dict[str, Callable[[Any, dict[str, Any], int], Any]] = {
    "full": _full_pair_logps, "shared": _shared_pair_logps, "packed": _packed_pair_logps}


def pair_logps(model, batch: dict[str, Any], pad_id: int, layout: str):
    """(chosen_logps, rejected_logps), each (B,), for a batch from `collate_pairs`; `layout` a PAIR_LAYOUTS key."""
    return PAIR_LAYOUTS[layout](model, batch, pad_id)
