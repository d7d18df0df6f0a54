"""Evaluation, one implementation: replies (pipeline/generate.py) -> each scored with its benchmark's metric ->
accuracy per style and group with standard errors.

The main job's eval stages and jobs/evaluate.py (pipeline/benchmark_eval.py) both call `evaluate_source`.
Layout of one evaluation folder: `generated/` and `scored/` (Parquet: every reply with its parsed answer,
value, correct, reason), `summary.json` (metrics.summarize, written last: its presence marks the folder
complete).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from reasoner_ray.core.config import Config, DataSource
from reasoner_ray.core.metrics import ENDPOINT_ERROR, summarize
from reasoner_ray.pipeline.generate import GenerationTask, generate, read_table
from reasoner_ray.storage import write_atomic

log = logging.getLogger(__name__)


EVAL_SUMMARY = "summary.json"


# What each answer type's score is called in a table (the benchmark's own metric).
METRIC_NAMES = {"multiple_choice": "accuracy", "yes_no": "accuracy", "number": "relaxed accuracy", "open": "VQA accuracy",
                "anls": "ANLS", "math": "accuracy", "relaxed": "relaxed accuracy", "mathvista": "accuracy"}


@dataclass
class EvalResult:
    questions: int
    replies: int
    summary: dict[str, dict]
    tokens: dict[str, int] = field(default_factory=dict)  # prompt / completion, and cached replies
    verifier: dict[str, dict] = field(default_factory=dict)  # the verify stage: summary, auroc, selection
    also_questions: dict[str, int] = field(default_factory=dict)  # questions of each task generated alongside


def score_replies(batch):
    """The reward stage's scoring; a reply the endpoint never gave is `endpoint_error` (unscored, not wrong)."""
    from reasoner_ray.operators.scoring import score_batch

    scored = score_batch(batch)
    if "error" in scored:
        failed = scored["error"].astype(str) != ""
        scored.loc[failed, "reason"] = ENDPOINT_ERROR
    return scored


def evaluate_source(config: Config, backend, source: DataSource, out: Path, round_index: int = 0,
                    also: dict[str, GenerationTask] | None = None) -> EvalResult:
    """`also`: more generation for the same engines' pass (the main job: the next round's rollouts)."""
    import ray

    from reasoner_ray.operators.generation import GenerationPlan

    plan = GenerationPlan.evaluation(list(config.eval.styles), config.eval.max_tokens, round_index)
    counts = generate(config, backend, {"eval": GenerationTask(source, plan, out / "generated"), **(also or {})})
    n_questions = counts.pop("eval")
    ray.data.read_parquet(str(out / "generated")).map_batches(score_replies, batch_format="pandas", num_cpus=0.5) \
        .write_parquet(str(out / "scored"))
    table = read_table(out / "scored")
    records = table.select(["style", "answer_type", "value", "reason", "tags"]).to_pylist()
    for r in records:
        r["tags"] = json.loads(r["tags"])
    summary = summarize(records)
    tokens = {"prompt": int(sum(table["prompt_tokens"].to_pylist())),
              "completion": int(sum(table["completion_tokens"].to_pylist()))}
    if "cached" in table.column_names:
        tokens["cached_replies"] = int(sum(table["cached"].to_pylist()))
    for style, s in summary.items():
        if s["all"]["unscored"]:
            log.warning("eval %s: %s replies left out of the accuracy (cannot be scored)", style, s["all"]["unscored"])
    write_atomic(out / EVAL_SUMMARY, json.dumps(summary, indent=2))
    return EvalResult(n_questions, len(records), summary, tokens, also_questions=counts)
