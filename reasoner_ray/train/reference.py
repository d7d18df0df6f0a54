"""Reference log-probs, computed once per round without gradients and stored in the preference rows.

DPO then holds no reference model: `ref_chosen_logp` / `ref_rejected_logp` of each PreferenceRow are the summed
token log-probs of each response under the reference, with the same chat template, truncation, dtype and prompt
layout (`steps.dpo_pair_layout`) as the policy in training, so z = 0 on equal weights. The pairs are split
into `train.num_workers` shards scored by Ray tasks, each on one GPU when `train.use_gpu` (the model and the
batches on that GPU), else on its share of the node's CPU cores; the driver only filters and merges.
A reference folder holding a LoRA adapter (peft: `adapter_config.json`) is scored as the policy with the
adapter disabled, i.e. its base model.

No pass at all for a pair the reference model sampled itself (`dpo.reuse_sampled_logps`, `sampling.model` of
the pair is the reference folder: round one against the SFT model, every round with `dpo.reference: previous`):
the rollout engine already returned each sampled token's log-prob, and a side's reference log-prob is their sum
over the tokens training uses, provided those are a prefix of the sampled tokens (a chain cut by
`pairs.truncate_words` or `train.max_length`, or the whole chain through its end-of-turn token) and the prompt
has the length the engine saw. Any other pair goes through the pass. The engine's dtype is the pass's on CPU
(float32: sums equal to about 1e-5); a bfloat16 GPU engine differs from the training forward by its rounding.

    from reasoner_ray.train.reference import compute_reference_logps
    counts = compute_reference_logps(config, "runs/x/sft/model", "pairs.jsonl", "pairs_ref.jsonl")
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.core.rows import PreferenceRow

log = logging.getLogger(__name__)


def reference_logps(model, encoder, examples: list[dict], batch_size: int, max_length: int, layout: str):
    """[(chosen_logp, rejected_logp)] per example, no gradients, on the model's device."""
    import torch

    from reasoner_ray.train.collate import collate_pairs, on_model_device
    from reasoner_ray.train.logprobs import pair_logps

    model.eval()
    out: list[tuple[float, float]] = []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = on_model_device(collate_pairs(encoder, examples[start:start + batch_size], max_length), model)
            chosen, rejected = pair_logps(model, batch, encoder.pad_id, layout)
            out += list(zip(chosen.float().cpu().tolist(), rejected.float().cpu().tolist()))
    return out


def score_shard(config_tree: dict, ref_model_path: str, examples: list[dict], threads: int) -> list[tuple[float, float]]:
    """One shard of the reference pass, in a Ray task: the reference on this task's GPU (train.use_gpu) or CPU."""
    from transformers.utils import logging as hf_logging

    from reasoner_ray.models.loading import load_model
    from reasoner_ray.train.steps import dpo_pair_layout, pair_encoder

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per task on the job's console says nothing
    config = Config.model_validate(config_tree)
    model, processor, reference_mode = load_model(ref_model_path, config.model.dtype, as_reference=True)
    model = on_task_device(model, config, threads)
    with reference_mode():
        return reference_logps(model, pair_encoder(processor, config), examples, config.dpo.ref_batch_size,
                               config.train.max_length, dpo_pair_layout(config, model))


def run_sharded(config: Config, fn, items: list, *args) -> list:
    """`fn(config_tree, *args, shard, threads)` on `train.num_workers` Ray tasks, each on one GPU (`train.use_gpu`)
    or a share of the node's CPU cores, every item in one shard; the results merged back in item order."""
    import os

    import ray

    from reasoner_ray.ray_utils import init_ray

    init_ray()
    shards = max(1, min(config.train.num_workers, len(items)))
    threads = max(1, (os.cpu_count() or 1) // shards)
    task = shard_task(fn, config.train.use_gpu)
    tree = config.model_dump(mode="json")
    results = ray.get([task.remote(tree, *args, items[i::shards], threads) for i in range(shards)])
    merged: list = [None] * len(items)
    for i, shard in enumerate(results):
        merged[i::shards] = shard
    return merged


def shard_task(fn, gpu: bool):
    """`fn` as a Ray task of one CPU, or one GPU whose worker exits after the call (`max_calls=1`): a reused worker
    keeps its CUDA context and cached memory (a whole reference model) and stays on its first GPU, starving the
    vLLM engine or trainer that comes next. (Ray sets max_calls=1 for GPU tasks only when num_gpus is given to
    `@ray.remote` itself; `.options(num_gpus=...)` cannot set it, and the project asked there.)"""
    import ray

    return ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_calls=1 if gpu else 0)(fn)


def on_task_device(model, config: Config, threads: int):
    """The model on this Ray task's GPU (`train.use_gpu`), else torch on the task's share of CPU threads."""
    import torch

    if config.train.use_gpu:
        return model.to(torch.device("cuda", torch.cuda.current_device()))
    torch.set_num_threads(threads)
    return model


def sampled_logps(encoder, example: dict, row: PreferenceRow, max_length: int) -> tuple[float, float] | None:
    """(chosen, rejected) reference log-probs from the tokens the reference sampled, or None where either side's
    training tokens (as `collate_pairs` cuts them) are not a prefix of its sampled tokens after the same prompt
    (the same prompt token ids: `prompt_digest`)."""
    import math

    sums = []
    for side in ("chosen", "rejected"):
        sampled = getattr(row, f"{side}_sampled")
        if sampled is None or sampled.prompt_tokens not in (None, example["prompt_length"]):
            return None
        # the same token ids, not only as many: an engine and a trainer that rendered or processed the prompt
        # differently would score other tokens (rollouts without a digest are checked by length alone)
        if sampled.prompt_digest is not None and sampled.prompt_digest != example.get("prompt_digest"):
            return None
        ids = encoder.completion_ids(example["messages"], example[side], end_turn=not example[f"{side}_truncated"])
        ids = ids[:max_length - example["prompt_length"]]
        if not ids or ids != sampled.token_ids[:len(ids)]:
            return None
        sums.append(math.fsum(sampled.logprobs[:len(ids)]))
    return sums[0], sums[1]


def compute_reference_logps(config: Config, ref_model_path: str, pairs_path: str, out_path: str) -> dict[str, int]:
    """Write the pairs with reference log-probs filled to out_path; returns counts (written, prompt_too_long,
    from_rollouts: taken from the sampled tokens, from_pass: computed)."""
    from reasoner_ray.models.chat import load_processor
    from reasoner_ray.train.collate import fit_filter
    from reasoner_ray.train.data import preference_examples, read_rows, write_rows
    from reasoner_ray.train.steps import pair_encoder

    counts: Counter = Counter()
    rows = read_rows(pairs_path, PreferenceRow)
    encoder = pair_encoder(load_processor(ref_model_path), config)
    examples = fit_filter(encoder, preference_examples(rows), config.train.max_length, counts)
    reuse = config.dpo.reuse_sampled_logps and not (Path(ref_model_path) / "adapter_config.json").is_file()
    reference = Path(ref_model_path).resolve()
    logps: dict[int, tuple[float, float]] = {}
    for ex in examples:
        row, sampler = rows[ex["index"]], rows[ex["index"]].sampling.get("model")
        if reuse and sampler is not None and Path(sampler).resolve() == reference:
            if (found := sampled_logps(encoder, ex, row, config.train.max_length)) is not None:
                logps[ex["index"]] = found
    to_score = [ex for ex in examples if ex["index"] not in logps]
    if to_score:
        computed = run_sharded(config, score_shard, to_score, ref_model_path)
        logps.update(zip((ex["index"] for ex in to_score), computed))
    scored = [rows[ex["index"]].model_copy(update={"ref_chosen_logp": logps[ex["index"]][0],
                                                   "ref_rejected_logp": logps[ex["index"]][1]}) for ex in examples]
    write_rows(scored, out_path)
    counts.update(written=len(scored), from_rollouts=len(examples) - len(to_score), from_pass=len(to_score))
    log.info("reference log-probs for %d pairs -> %s (%s)", len(scored), out_path, dict(counts))
    return dict(counts)


def response_logps(model, encoder, items: list[tuple[dict, str]], max_length: int,
                   batch_size: int = 32) -> list[tuple[list[int], list[float]]]:
    """(token ids, each token's log-prob) of each (prompt example, response), no gradients; the full-sequence
    path of `pair_logps(layout="full")`, response cut at `max_length` as in training."""
    import torch

    from reasoner_ray.train.collate import concat_sequences, on_model_device
    from reasoner_ray.train.logprobs import (
        completion_logits_to_keep,
        shifted_token_logps,
    )

    model.eval()
    out: list[tuple[list[int], list[float]]] = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            prompts = encoder.encode_prompts([ex for ex, _ in chunk])
            room = [max_length - int(p) for p in prompts["attention_mask"].sum(1)]
            completions = [encoder.completion_ids(ex["messages"], r)[:room[i]] for i, (ex, r) in enumerate(chunk)]
            batch = on_model_device(concat_sequences(prompts, completions, encoder.pad_id), model)
            mask = batch.pop("completion_mask")
            keep = completion_logits_to_keep(batch["attention_mask"], mask)
            logits = model(**batch, use_cache=False, logits_to_keep=keep).logits
            out += list(zip(completions, shifted_token_logps(logits, batch["input_ids"], mask)))
    return out
