"""Reference log-probs, computed once per round without gradients and stored in the preference rows.

DPO then holds no reference model: `ref_chosen_logp` / `ref_rejected_logp` of each PreferenceRow are the summed
token log-probs of each response under the reference, with the same chat template, truncation, dtype and prompt
sharing (`steps.dpo_shares_prompt`) as the policy in training, so z = 0 on equal weights. The pairs are split
into `train.num_workers` shards scored by Ray tasks, each on one GPU when `train.use_gpu` (the model and the
batches on that GPU), else on its share of the node's CPU cores; the driver only filters and merges.
A reference folder holding a LoRA adapter (peft: `adapter_config.json`) is scored as the policy with the
adapter disabled, i.e. its base model.

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


def _base_path(path: str) -> str:
    """The folder holding the processor: a LoRA adapter's base model, else the folder itself."""
    adapter = Path(path) / "adapter_config.json"
    if adapter.is_file():
        import json

        return json.loads(adapter.read_text())["base_model_name_or_path"]
    return path


def load_reference(path: str, dtype: str = "auto"):
    """(model, processor, context) where `context()` switches the model into its reference behaviour."""
    from reasoner_ray.models.loading import load_model_and_processor

    if (Path(path) / "adapter_config.json").is_file():
        from peft import PeftModel

        model, processor = load_model_and_processor(_base_path(path), dtype)
        model = PeftModel.from_pretrained(model, path)
        return model, processor, model.disable_adapter
    model, processor = load_model_and_processor(path, dtype)
    return model, processor, contextlib.nullcontext


def reference_logps(model, encoder, examples: list[dict], batch_size: int, max_length: int, share_prompt: bool):
    """[(chosen_logp, rejected_logp)] per example, no gradients, on the model's device."""
    import torch

    from reasoner_ray.train.collate import collate_pairs
    from reasoner_ray.train.logprobs import pair_logps

    model.eval()
    device = next(model.parameters()).device
    out: list[tuple[float, float]] = []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = collate_pairs(encoder, examples[start:start + batch_size], max_length)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            chosen, rejected = pair_logps(model, batch, encoder.pad_id, share_prompt=share_prompt)
            out += list(zip(chosen.float().cpu().tolist(), rejected.float().cpu().tolist()))
    return out


def score_shard(config_tree: dict, ref_model_path: str, examples: list[dict], threads: int) -> list[tuple[float, float]]:
    """One shard of the reference pass, in a Ray task: the reference on this task's GPU (train.use_gpu) or CPU."""
    import torch
    from transformers.utils import logging as hf_logging

    from reasoner_ray.train.collate import VLMEncoder
    from reasoner_ray.train.steps import dpo_shares_prompt

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per task on the job's console says nothing
    config = Config.model_validate(config_tree)
    if not config.train.use_gpu:
        torch.set_num_threads(threads)
    model, processor, reference_mode = load_reference(ref_model_path, config.model.dtype)
    if config.train.use_gpu:
        model.to(torch.device("cuda", torch.cuda.current_device()))
    with reference_mode():
        return reference_logps(model, VLMEncoder(processor), examples, config.dpo.ref_batch_size,
                               config.train.max_length, dpo_shares_prompt(config, model))


def _sharded_logps(config: Config, ref_model_path: str, examples: list[dict]) -> list[tuple[float, float]]:
    import os

    import ray

    from reasoner_ray.ray_utils import init_ray

    init_ray()
    shards = max(1, min(config.train.num_workers, len(examples)))
    threads = max(1, (os.cpu_count() or 1) // shards)
    task = ray.remote(score_shard).options(num_cpus=1, num_gpus=1 if config.train.use_gpu else 0)
    tree = config.model_dump(mode="json")
    futures = [task.remote(tree, ref_model_path, examples[i::shards], threads) for i in range(shards)]
    results = ray.get(futures)
    merged: list[tuple[float, float]] = [(0.0, 0.0)] * len(examples)
    for i, shard in enumerate(results):
        merged[i::shards] = shard
    return merged


def compute_reference_logps(config: Config, ref_model_path: str, pairs_path: str, out_path: str) -> dict[str, int]:
    """Write the pairs with reference log-probs filled to out_path; returns counts (written, prompt_too_long)."""
    from reasoner_ray.train.collate import VLMEncoder, fit_filter
    from reasoner_ray.train.data import preference_examples, read_rows, write_rows

    from transformers import AutoProcessor

    counts: Counter = Counter()
    rows = read_rows(pairs_path, PreferenceRow)
    encoder = VLMEncoder(AutoProcessor.from_pretrained(_base_path(ref_model_path)))
    examples = fit_filter(encoder, preference_examples(rows), config.train.max_length, counts)
    logps = _sharded_logps(config, ref_model_path, examples) if examples else []
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
