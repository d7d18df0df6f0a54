"""Rollouts, rewards, pairs and evaluation as stage functions over the run directory.

Each returns a `StageFn` for `StageRunner.run`. Rollouts and evaluation stream questions through vLLM actors
(reasoner_ray.stages.generation) and write Parquet; rewards score rollouts in Ray Data batches
(reasoner_ray.stages.reward_stage); pairs are built in the driver by the pure pair builder and written as
PreferenceRow JSONL; evaluation also writes a summary (accuracy per style and answer type, standard error).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

from reasoner_ray.core.config import Config, DataSource
from reasoner_ray.core.metrics import summarize
from reasoner_ray.core.pairs import ScoredSample, build_pairs
from reasoner_ray.core.prompts import prompt_messages
from reasoner_ray.core.rows import VQARow
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO

log = logging.getLogger(__name__)

PAIRS_FILE = "pairs.jsonl"
EVAL_SUMMARY = "summary.json"


def engine_settings(config: Config, model_path: str):
    from reasoner_ray.engines.vllm_generator import EngineSettings

    r = config.rollout
    return EngineSettings(model_path=model_path, max_model_len=r.max_model_len, kv_cache_gib=r.kv_cache_gib,
                          gpu_memory_utilization=r.gpu_memory_utilization, tensor_parallel_size=r.tensor_parallel_size,
                          enforce_eager=r.enforce_eager, seed=config.run.seed, dtype=config.model.dtype,
                          cpu_cores=r.cpu_cores_per_engine or 0)


def _questions(source: DataSource):
    from reasoner_ray.data.ray_source import good_rows, read_dataset

    return good_rows(read_dataset(source)).select_columns(["id", "row"]).materialize()


def _parquet_rows(folder: Path) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").count_rows() if any(folder.glob("*.parquet")) else 0


def _generate(config: Config, model_path: str, source: DataSource, plan, out: Path) -> tuple[int, int]:
    from reasoner_ray.stages.generation import generate_dataset

    questions = _questions(source)
    n_questions = questions.count()
    gpus = float(config.rollout.tensor_parallel_size) if config.train.use_gpu else 0.0
    ds = generate_dataset(questions, engine_settings(config, model_path), plan, config.rollout.num_engines,
                          config.rollout.batch_size, gpus_per_engine=gpus)
    # Writing takes no CPU slot: with one engine per core the engines hold every CPU of the node, and a write
    # task waiting for one would stall the stage.
    with warnings.catch_warnings():  # Ray 2.60's write_parquet has no named CPU parameter to use instead yet
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds.write_parquet(str(out), ray_remote_args={"num_cpus": 0})
    return n_questions, _parquet_rows(out)


def rollouts_stage(config: Config, model_path: str, round_index: int) -> StageFn:
    from reasoner_ray.stages.generation import GenerationPlan

    r = config.rollout

    def run(io: StageIO) -> StageCounts:
        plan = GenerationPlan.rollouts(r.temperatures, r.samples_per_temperature, r.max_tokens, r.top_p,
                                       config.run.seed, round_index, r.ignore_eos)
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


def _read_table(folder: Path, columns: list[str] | None = None):
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").to_table(columns=columns)


def pairs_stage(config: Config, rewards_dir: Path, round_index: int) -> StageFn:
    def run(io: StageIO) -> StageCounts:
        cols = ["question_id", "sample_index", "text", "value", "correct", "reason", "temperature"]
        table = _read_table(rewards_dir, cols)
        records = table.to_pylist()
        temperature_of = {(r["question_id"], r["sample_index"]): r["temperature"] for r in records}
        result = build_pairs((ScoredSample.from_record(r) for r in records), band=tuple(config.pairs.accuracy_band),
                             max_pairs=config.pairs.max_pairs_per_question,
                             truncate_words=config.pairs.truncate_words, seed=config.run.seed * 1000 + round_index)
        needed = {p.question_id for p in result.pairs}
        rows = _rows_by_id(config, needed)
        with (io.output / PAIRS_FILE).open("w") as fh:
            for p in result.pairs:
                row = rows[p.question_id]
                sampling = {"chosen_temperature": temperature_of[(p.question_id, p.chosen_index)],
                            "rejected_temperature": temperature_of[(p.question_id, p.rejected_index)],
                            "max_tokens": config.rollout.max_tokens, "top_p": config.rollout.top_p}
                pref = p.to_preference_row(row.question, row.image, prompt_messages(row, "cot"), round_index, sampling)
                fh.write(pref.model_dump_json() + "\n")
        stats = result.stats.as_dict()
        (io.output / "stats.json").write_text(json.dumps(stats, indent=2))
        return StageCounts(len(records), len(result.pairs), {"stats": stats})

    return run


def rollout_source(config: Config) -> DataSource:
    """The questions of every round: the train split, cut to `rollout.limit` good rows when set."""
    limit = config.rollout.limit if config.rollout.limit is not None else config.data.train.limit
    return config.data.train.model_copy(update={"limit": limit})


def _rows_by_id(config: Config, ids: set[str]) -> dict[str, VQARow]:
    """The rows of the questions the rollouts read, by the same reader and selection (so every id is found)."""
    from reasoner_ray.data.ray_source import row_from_record

    return {rec["id"]: row_from_record(rec) for rec in _questions(rollout_source(config)).iter_rows() if rec["id"] in ids}


def eval_stage(config: Config, model_path: str, round_index: int) -> StageFn:
    from reasoner_ray.stages.generation import GenerationPlan

    def run(io: StageIO) -> StageCounts:
        import ray

        from reasoner_ray.stages.reward_stage import score_batch

        plan = GenerationPlan.evaluation(list(config.eval.styles), config.eval.max_tokens, round_index)
        generated = io.output / "generated"
        n_q, _ = _generate(config, model_path, config.data.eval, plan, generated)
        ray.data.read_parquet(str(generated)).map_batches(score_batch, batch_format="pandas", num_cpus=0.5) \
            .write_parquet(str(io.output / "scored"))
        records = _read_table(io.output / "scored", ["style", "answer_type", "value", "reason", "tags"]).to_pylist()
        for r in records:
            r["tags"] = json.loads(r["tags"])
        summary = summarize(records)
        (io.output / EVAL_SUMMARY).write_text(json.dumps(summary, indent=2))
        extra = {style: {"accuracy": s["all"]["accuracy"], "stderr": s["all"]["stderr"], "unscored": s["all"]["unscored"]}
                 for style, s in summary.items()}
        for style, s in summary.items():
            if s["all"]["unscored"]:
                log.warning("eval %s: %s rows left out of the accuracy (cannot be scored)", style, s["all"]["unscored"])
        extra["summary"] = summary  # every group (answer types, tags) for the report
        return StageCounts(n_q, len(records), extra)

    return run
