"""Rollouts, rewards, pairs and evaluation as stage functions over the run directory.

Each returns a `StageFn` for `StageRunner.run`. Rollouts and evaluation stream questions through vLLM actors
(reasoner_ray.stages.generation) and write Parquet; rewards score rollouts in Ray Data batches
(reasoner_ray.stages.reward_stage); pairs are built in the driver by the pure pair builder and written as
PreferenceRow JSONL (with each chain's sampled tokens and log-probs when the rollouts kept them); evaluation
also writes a summary (accuracy per style and answer type, standard error).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reasoner_ray.core.config import Config, DataSource
from reasoner_ray.core.pairs import ScoredSample, build_pairs
from reasoner_ray.core.prompts import prompt_messages
from reasoner_ray.core.rows import SampledTokens, VQARow
from reasoner_ray.pipeline.evaluation import read_table
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO
from reasoner_ray.stages.generation import SAMPLED_COLUMNS

log = logging.getLogger(__name__)

PAIRS_FILE = "pairs.jsonl"


def _parquet_rows(folder: Path) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").count_rows() if any(folder.glob("*.parquet")) else 0


def _generate(config: Config, model_path: str, source: DataSource, plan, out: Path) -> tuple[int, int]:
    from reasoner_ray.pipeline.evaluation import ModelBackend, generate

    return generate(config, ModelBackend(model_path), source, plan, out), _parquet_rows(out)


def rollouts_stage(config: Config, model_path: str, round_index: int) -> StageFn:
    from reasoner_ray.stages.generation import GenerationPlan

    r = config.rollout

    def run(io: StageIO) -> StageCounts:
        plan = GenerationPlan.rollouts(r.temperatures, r.samples_per_temperature, r.max_tokens, r.top_p,
                                       config.run.seed, round_index, r.ignore_eos,
                                       logprobs=config.dpo.reuse_sampled_logps)
        n_in, n_out = _generate(config, model_path, rollout_source(config), plan, io.output)
        return StageCounts(n_in, n_out, {"model": model_path})

    return run


def rewards_stage(rollouts_dir: Path) -> StageFn:
    def run(io: StageIO) -> StageCounts:
        import ray

        from reasoner_ray.stages.reward_stage import score_batch

        ds = ray.data.read_parquet(str(rollouts_dir)).map_batches(score_batch, batch_format="pandas", num_cpus=0.5)
        ds.write_parquet(str(io.output))
        n_in = _parquet_rows(rollouts_dir)
        return StageCounts(n_in, _parquet_rows(io.output))

    return run


def pairs_stage(config: Config, rewards_dir: Path, round_index: int, sampler: str) -> StageFn:
    """`sampler`: the model folder the rollouts sampled with, recorded in every pair (`sampling.model`)."""

    def run(io: StageIO) -> StageCounts:
        cols = ["question_id", "sample_index", "text", "value", "correct", "reason", "temperature"]
        if set(SAMPLED_COLUMNS) <= set(_parquet_columns(rewards_dir)):  # rollouts that kept their log-probs
            cols += [*SAMPLED_COLUMNS, "prompt_tokens"]
        records = read_table(rewards_dir, cols).to_pylist()
        by_sample = {(r["question_id"], r["sample_index"]): r for r in records}
        result = build_pairs((ScoredSample.from_record(r) for r in records), band=tuple(config.pairs.accuracy_band),
                             max_pairs=config.pairs.max_pairs_per_question,
                             truncate_words=config.pairs.truncate_words, seed=config.run.seed * 1000 + round_index)
        needed = {p.question_id for p in result.pairs}
        rows = _rows_by_id(config, needed)
        with (io.output / PAIRS_FILE).open("w") as fh:
            for p in result.pairs:
                row = rows[p.question_id]
                chosen = by_sample[(p.question_id, p.chosen_index)]
                rejected = by_sample[(p.question_id, p.rejected_index)]
                sampling = {"chosen_temperature": chosen["temperature"],
                            "rejected_temperature": rejected["temperature"],
                            "max_tokens": config.rollout.max_tokens, "top_p": config.rollout.top_p, "model": sampler}
                pref = p.to_preference_row(row.question, row.image, prompt_messages(row, "cot"), round_index, sampling)
                pref.chosen_sampled, pref.rejected_sampled = _sampled_tokens(chosen), _sampled_tokens(rejected)
                fh.write(pref.model_dump_json() + "\n")
        stats = result.stats.as_dict()
        (io.output / "stats.json").write_text(json.dumps(stats, indent=2))
        return StageCounts(len(records), len(result.pairs), {"stats": stats})

    return run


def _parquet_columns(folder: Path) -> list[str]:
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").schema.names


def _sampled_tokens(record: dict) -> SampledTokens | None:
    if record.get("token_ids") is None:
        return None
    return SampledTokens(token_ids=record["token_ids"], logprobs=record["token_logprobs"],
                         prompt_tokens=record.get("prompt_tokens"))


def rollout_source(config: Config) -> DataSource:
    """The questions of every round: the train split, cut to `rollout.limit` good rows when set."""
    limit = config.rollout.limit if config.rollout.limit is not None else config.data.train.limit
    return config.data.train.model_copy(update={"limit": limit})


def _rows_by_id(config: Config, ids: set[str]) -> dict[str, VQARow]:
    """The rows of the questions the rollouts read, by the same reader and selection (so every id is found)."""
    from reasoner_ray.data.ray_source import row_from_record
    from reasoner_ray.pipeline.evaluation import questions_of

    return {rec["id"]: row_from_record(rec) for rec in questions_of(rollout_source(config)).iter_rows() if rec["id"] in ids}


def eval_stage(config: Config, model_path: str, round_index: int) -> StageFn:
    """Greedy CoT and direct accuracy of `model_path` on data.eval (pipeline/evaluation.py, shared with
    jobs/evaluate.py); the manifest entry carries each style's accuracy and the whole summary."""

    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.pipeline.evaluation import ModelBackend, evaluate_source

        result = evaluate_source(config, ModelBackend(model_path), config.data.eval, io.output, round_index)
        summary = result.summary
        extra = {style: {"accuracy": s["all"]["accuracy"], "stderr": s["all"]["stderr"], "unscored": s["all"]["unscored"]}
                 for style, s in summary.items()}
        extra["summary"] = summary  # every group (answer types, tags) for the report
        return StageCounts(result.questions, result.replies, extra)

    return run
