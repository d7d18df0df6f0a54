"""The training recipes, SFT and DPO: how a micro-batch is collated, the loss it gives and the settings it trains
with (registry keyed by recipe name; the pipeline stages `sft` and `r<k>/dpo` run one each).

SFT: the token NLL of the assistant tokens, normalised by the step's global count of target tokens
(`losses.sft_loss` with `token_share`), so every target token of a step weighs the same whichever micro-batch
or rank it is in.
DPO: policy log-probs of both responses (prompt once per pair when `dpo.share_prompt`, packed when
`dpo.pack_pairs`), the reference log-probs stored in the rows, and the configured loss from `losses.DPO_LOSSES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reasoner_ray.train.collate import (
    IGNORE_INDEX,
    VLMEncoder,
    collate_pairs,
    collate_sft,
    on_model_device,
)
from reasoner_ray.train.logprobs import completion_logits_to_keep, pair_logps, unwrap
from reasoner_ray.train.losses import PairLogps, dpo_loss, sft_loss


@dataclass(frozen=True)
class Recipe:
    collate: Callable[[VLMEncoder, list[dict[str, Any]], int], dict[str, Any]]
    loss: Callable[..., tuple[Any, dict[str, float]]]  # (model, batch, encoder, config, token_share=None)
    # lr / vision lr / global batch / epochs / freezing, from the recipe's own config section
    settings: Callable[[Any], dict[str, Any]]
    # The encoder the recipe's batches are tokenized with (processor, config).
    encoder: Callable[[Any, Any], VLMEncoder] = lambda processor, config: VLMEncoder(processor)
    # Units the loss is normalised by over the whole step (SFT: target tokens); None: a per-batch mean.
    targets: Callable[[dict[str, Any]], int] | None = None


def target_tokens(labels) -> int:
    """Target tokens of a batch as `sft_loss` counts them (after the shift: position 0 predicts nothing)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def token_share(local_tokens: int, accumulation: int) -> float:
    """The step's target tokens summed over ranks, over accumulation x ranks: the `sft_loss` divisor that makes
    DeepSpeed's average of micro-batch losses (over accumulation steps and ranks) a mean over all tokens."""
    from reasoner_ray.train.collectives import all_reduce_sum, world_size

    total = all_reduce_sum([float(local_tokens)])[0]
    return max(total, 1.0) / (accumulation * world_size())


def has_sliding_window(hf_config) -> bool:
    """Whether the text model has sliding-window attention layers (Gemma 3). Their masks count cache slots, and
    the shared-prompt path leaves holes after right-padded prompts, so a window would cut in the wrong place."""
    text = getattr(hf_config, "text_config", hf_config)
    if not getattr(text, "sliding_window", None):
        return False
    layer_types = getattr(text, "layer_types", None)
    return "sliding_attention" in layer_types if layer_types else bool(getattr(text, "use_sliding_window", False))


def dpo_pair_layout(config, model) -> str:
    """The `logprobs.PAIR_LAYOUTS` entry for DPO: the prompt once per pair (shared or packed) needs a KV cache,
    which gradient checkpointing does not keep and sliding-window layers cannot use. The policy and the reference
    pass both ask here, so they take the same numeric path: z = 0 on equal weights."""
    shares = (config.dpo.share_prompt and not config.train.gradient_checkpointing
              and not has_sliding_window(unwrap(model).config))
    return ("packed" if config.dpo.pack_pairs else "shared") if shares else "full"


def _sft_loss(model, batch, encoder, config, token_share=None):
    batch = on_model_device(batch, model)
    labels = batch.pop("labels")
    # The LM head only where a label follows: a prompt's image and text positions give no loss, and their logits
    # (fp32 in the loss) would be the largest tensor of the step at a 128K vocabulary.
    keep = completion_logits_to_keep(batch["attention_mask"], labels != IGNORE_INDEX)
    out = model(**batch, use_cache=False, logits_to_keep=keep)
    loss = sft_loss(out.logits, labels, token_share)
    return loss, {"loss": float(loss.detach()), "tokens": float((labels != -100).sum())}


def _dpo_loss(model, batch, encoder, config, token_share=None):
    if "ref_chosen_logps" not in batch:
        raise ValueError("DPO batch has no reference log-probs: run compute_reference_logps first")
    batch = on_model_device(batch, model)
    chosen, rejected = pair_logps(model, batch, encoder.pad_id, dpo_pair_layout(config, model))
    tokens = batch["completion_mask"].sum(1).to(chosen.dtype)
    logps = PairLogps(chosen, rejected, batch["ref_chosen_logps"].to(chosen.dtype),
                      batch["ref_rejected_logps"].to(chosen.dtype), tokens[0::2], tokens[1::2])
    d = config.dpo
    loss, metrics = dpo_loss(logps, d.loss, d.beta, d.label_smoothing, d.nll_weight, d.dpop_lambda)
    return loss, metrics


def pair_encoder(processor, config) -> VLMEncoder:
    """The DPO encoder, for the policy and the reference alike: completions end at the end-of-turn token when
    reference log-probs may come from the rollouts (`dpo.reuse_sampled_logps`), else TRL's whole turn."""
    return VLMEncoder(processor, turn_tail=not config.dpo.reuse_sampled_logps)


def _sft_settings(config) -> dict[str, Any]:
    s = config.sft
    return dict(lr=s.lr, vision_lr=s.vision_lr, global_batch_size=s.global_batch_size, epochs=s.epochs,
                freeze_vision=config.train.freeze_vision, freeze_projector=config.train.freeze_projector)


def _dpo_settings(config) -> dict[str, Any]:
    d = config.dpo
    return dict(lr=d.lr, vision_lr=None, global_batch_size=d.global_batch_size, epochs=d.epochs,
                freeze_vision=d.freeze_vision, freeze_projector=d.freeze_projector)


RECIPES: dict[str, Recipe] = {
    "sft": Recipe(collate=collate_sft, loss=_sft_loss, settings=_sft_settings,
                  targets=lambda batch: target_tokens(batch["labels"])),
    "dpo": Recipe(collate=collate_pairs, loss=_dpo_loss, settings=_dpo_settings, encoder=pair_encoder),
}


def recipe_settings(config, recipe: str) -> dict[str, Any]:
    """lr / batch / epochs / freezing for a recipe, from its own config section."""
    return RECIPES[recipe].settings(config)
