"""The `r<k>/verify` stage: the round's DPO model as a verifier of its own sampled chains.

For every evaluation question it samples `eval.samples` CoT chains from the round's policy (vLLM actors, as
rollouts do), scores each against the gold (reward stage), computes each chain's log-prob under the policy and
under the DPO reference (transformers, no gradients, on Ray tasks as the reference pass; chains that could not
be scored are left out and counted), and compares greedy decoding, majority voting, best-of-N by the implicit
reward and reward-weighted voting (reasoner_ray.core.verifier).

Output: `generated/` and `scored/` (Parquet), `chains.parquet` (one row per chain with both log-probs) and
`summary.json` ({group: {method: {n, accuracy, stderr, vs_majority, vs_majority_stderr}}}, groups: all, each
answer type, each row tag).
"""

from __future__ import annotations

import json
import logging

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO

log = logging.getLogger(__name__)

VERIFY_SUMMARY = "summary.json"


def verify_plan(config: Config, round_index: int):
    """`eval.samples` CoT chains per evaluation question at `eval.sample_temperature`."""
    from reasoner_ray.stages.generation import GenerationPlan

    e = config.eval
    return GenerationPlan.rollouts([e.sample_temperature], e.samples, e.max_tokens, 1.0, config.run.seed, round_index)


def verify_stage(config: Config, policy: str, reference: str, round_index: int) -> StageFn:
    def run(io: StageIO) -> StageCounts:
        import pyarrow as pa
        import pyarrow.parquet as pq
        import ray

        from reasoner_ray.core import verifier
        from reasoner_ray.core.metrics import UNSCORED_REASONS
        from reasoner_ray.core.prompts import prompt_messages
        from reasoner_ray.data.readers import iter_rows
        from reasoner_ray.pipeline.evaluation import read_table
        from reasoner_ray.pipeline.generation_stages import generate_or_adopt
        from reasoner_ray.stages.reward_stage import score_batch

        n_q, _, generated = generate_or_adopt(config, io, policy, config.data.eval, verify_plan(config, round_index),
                                              io.output / "generated")
        ray.data.read_parquet(str(io.output / "generated")).map_batches(score_batch, batch_format="pandas",
                                                                        num_cpus=0.5).write_parquet(str(io.output / "scored"))
        cols = ["question_id", "sample_index", "text", "parsed", "value", "reason", "answer_type", "tags"]
        scored = read_table(io.output / "scored", cols).to_pylist()
        # A chain that could not be scored (unreadable gold, a math check that timed out) is no label: left out.
        records = sorted((r for r in scored if r["reason"] not in UNSCORED_REASONS),
                         key=lambda r: (r["question_id"], r["sample_index"]))
        unscored = len(scored) - len(records)
        rows = {row.id: row for row in iter_rows(config.data.eval, check_image=False)}
        items = [({"image": rows[r["question_id"]].image, "messages": prompt_messages(rows[r["question_id"]], "cot")},
                  r["text"]) for r in records]
        policy_logps = _logps(config, policy, items, as_reference=False)
        ref_logps = _logps(config, reference, items, as_reference=True)
        chains = [verifier.Chain(r["question_id"], r["sample_index"], r["parsed"], float(r["value"]), p, q, n)
                  for r, (p, n), (q, _) in zip(records, policy_logps, ref_logps)]
        pq.write_table(pa.Table.from_pylist([{**c.__dict__, "reward": c.reward(config.dpo.beta)} for c in chains]),
                       io.output / "chains.parquet")
        groups = {r["question_id"]: [r["answer_type"], *json.loads(r["tags"])] for r in records}
        summary = verifier.evaluate(chains, config.dpo.beta, lambda qid: groups[qid])
        (io.output / VERIFY_SUMMARY).write_text(json.dumps(summary, indent=2))
        top = summary["all"]
        log.info("verify r%d: %s", round_index, ", ".join(f"{m} {100 * top[m]['accuracy']:.1f}" for m in verifier.METHODS))
        return StageCounts(n_q, len(chains), {"summary": {m: top[m] for m in verifier.METHODS},
                                              "unscored_chains": unscored, **generated})

    return run


def _logps(config: Config, model_path: str, items, as_reference: bool):
    """Log-probs under a model folder, over the tokens DPO trains on, on Ray tasks as the reference pass runs
    (`train.num_workers` shards, one GPU each with `train.use_gpu`, `dpo.ref_batch_size` chains per batch)."""
    from reasoner_ray.train.reference import run_sharded

    return run_sharded(config, score_responses, items, model_path, as_reference)


def score_responses(config_tree: dict, model_path: str, as_reference: bool, items, threads: int):
    """One shard, in a Ray task; the reference is loaded as the DPO stage loads it (a LoRA folder counts as its
    base model)."""
    import contextlib

    from transformers.utils import logging as hf_logging

    from reasoner_ray.models.loading import load_model_and_processor
    from reasoner_ray.train.reference import load_reference, on_task_device, response_logps
    from reasoner_ray.train.steps import pair_encoder

    hf_logging.disable_progress_bar()
    config = Config.model_validate(config_tree)
    if as_reference:
        model, processor, mode = load_reference(model_path, config.model.dtype)
    else:
        (model, processor), mode = load_model_and_processor(model_path, config.model.dtype), contextlib.nullcontext
    model = on_task_device(model, config, threads)
    with mode():
        return response_logps(model, pair_encoder(processor, config), items, config.train.max_length,
                              config.dpo.ref_batch_size)
