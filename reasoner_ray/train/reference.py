"""Reference log-probs, computed once per round without gradients and stored in the preference rows.

DPO then holds no reference model: `ref_chosen_logp` / `ref_rejected_logp` of each PreferenceRow are the summed
token log-probs of each response under the reference, with the same chat template, truncation and prompt
sharing as training. A reference folder holding a LoRA adapter (peft: `adapter_config.json`) is scored as the
policy with the adapter disabled, i.e. its base model.

    from reasoner_ray.train.reference import compute_reference_logps
    counts = compute_reference_logps(config, "runs/x/sft/model", "pairs.jsonl", "pairs_ref.jsonl")
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.core.rows import PreferenceRow

log = logging.getLogger(__name__)


def load_reference(path: str, dtype: str = "auto"):
    """(model, processor, context) where `context()` switches the model into its reference behaviour."""
    from reasoner_ray.models.loading import load_model_and_processor

    if (Path(path) / "adapter_config.json").is_file():
        import json

        from peft import PeftModel

        base = json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]
        model, processor = load_model_and_processor(base, dtype)
        model = PeftModel.from_pretrained(model, path)
        return model, processor, model.disable_adapter
    model, processor = load_model_and_processor(path, dtype)
    return model, processor, contextlib.nullcontext


def reference_logps(model, encoder, examples: list[dict], batch_size: int, max_length: int, share_prompt: bool):
    """[(chosen_logp, rejected_logp)] per example, no gradients."""
    import torch

    from reasoner_ray.train.collate import collate_pairs
    from reasoner_ray.train.logprobs import pair_logps

    model.eval()
    out: list[tuple[float, float]] = []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = collate_pairs(encoder, examples[start:start + batch_size], max_length)
            chosen, rejected = pair_logps(model, batch, encoder.pad_id, share_prompt=share_prompt)
            out += list(zip(chosen.tolist(), rejected.tolist()))
    return out


def compute_reference_logps(config: Config, ref_model_path: str, pairs_path: str, out_path: str) -> dict[str, int]:
    """Write the pairs with reference log-probs filled to out_path; returns counts (written, prompt_too_long)."""
    from reasoner_ray.train.collate import VLMEncoder, fit_filter
    from reasoner_ray.train.data import preference_examples, read_rows, write_rows

    counts: Counter = Counter()
    rows = read_rows(pairs_path, PreferenceRow)
    model, processor, reference_mode = load_reference(ref_model_path, config.model.dtype)
    encoder = VLMEncoder(processor)
    examples = fit_filter(encoder, preference_examples(rows), config.train.max_length, counts)
    with reference_mode():
        logps = reference_logps(model, encoder, examples, config.dpo.ref_batch_size, config.train.max_length,
                                config.dpo.share_prompt)
    scored = [rows[ex["index"]].model_copy(update={"ref_chosen_logp": c, "ref_rejected_logp": r})
              for ex, (c, r) in zip(examples, logps)]
    write_rows(scored, out_path)
    counts["written"] = len(scored)
    log.info("reference log-probs for %d pairs -> %s (%s)", len(scored), out_path, dict(counts))
    return dict(counts)



def response_logps(model, encoder, items: list[tuple[dict, str]], max_length: int,
                   batch_size: int = 32) -> list[tuple[float, int]]:
    """(summed log-prob, token count) of each (prompt example, response), no gradients; the full-sequence path
    of `pair_logps(share_prompt=False)`, response cut at `max_length` as in training."""
    import torch

    from reasoner_ray.train.collate import concat_sequences
    from reasoner_ray.train.logprobs import shifted_logps

    model.eval()
    out: list[tuple[float, int]] = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            prompts = encoder.encode_prompts([ex for ex, _ in chunk])
            room = [max_length - int(p) for p in prompts["attention_mask"].sum(1)]
            completions = [encoder.completion_ids(ex["messages"], r)[:room[i]] for i, (ex, r) in enumerate(chunk)]
            batch = concat_sequences(prompts, completions, encoder.pad_id)
            mask = batch.pop("completion_mask")
            logps = shifted_logps(model(**batch, use_cache=False).logits, batch["input_ids"], mask)
            out += [(lp, len(c)) for lp, c in zip(logps.tolist(), completions)]
    return out
