"""The `r<k>/pairs` stage: preference pairs from the round's scored chains by the pure pair builder (core/pairs.py),
written as PreferenceRow JSONL with each chain's sampled tokens and log-probs when the rollouts kept them."""

from __future__ import annotations

import json
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.core.data_regime import rollout_source
from reasoner_ray.core.pairs import ScoredSample, build_pairs, rejected_classes
from reasoner_ray.core.prompts import prompt_messages
from reasoner_ray.core.rows import SampledTokens, VQARow
from reasoner_ray.operators.generation import SAMPLED_COLUMNS
from reasoner_ray.pipeline.generate import questions_of, read_table
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO
from reasoner_ray.storage import write_atomic

PAIRS_FILE = "pairs.jsonl"


def pairs_stage(config: Config, rewards_dir: Path, round_index: int, sampler: str) -> StageFn:
    """`sampler`: the model folder the rollouts sampled with, recorded in every pair (`sampling.model`)."""

    def run(io: StageIO) -> StageCounts:
        # Steps are checked whatever the pair options, to count what the pairs teach against (rejected_classes)
        records = scored_chains(rewards_dir, check_steps=True)
        if config.pairs.parting_logp_margin is not None and records and records[0].get("token_logprobs") is None:
            raise ValueError(f"pairs.parting_logp_margin needs the sampled log-probs, which round {round_index}'s "
                             f"rollouts did not keep (they were sampled before the option was set): rerun with "
                             f"--redo r{round_index}/rollouts")
        result = build_pairs((ScoredSample.from_record(r) for r in records), band=tuple(config.pairs.accuracy_band),
                             max_pairs=config.pairs.max_pairs_per_question,
                             truncate_words=config.pairs.truncate_words, seed=config.run.seed * 1000 + round_index,
                             prefer_shared_prefix=config.pairs.prefer_shared_prefix,
                             cut_after_parting=config.pairs.cut_after_parting,
                             consistent_chosen=config.pairs.consistent_chosen,
                             parting_logp_margin=config.pairs.parting_logp_margin,
                             sound_chosen=config.pairs.sound_chosen,
                             steps_rejected=config.pairs.steps_rejected,
                             conclusions_rejected=config.pairs.conclusions_rejected)
        rows = rows_by_id(config, round_index, {p.question_id for p in result.pairs})
        with (io.output / PAIRS_FILE).open("w") as fh:
            for pref in preference_rows(config, result.pairs, records, rows, round_index, sampler):
                fh.write(pref.model_dump_json() + "\n")
        stats = result.stats.as_dict()
        write_atomic(io.output / "stats.json", json.dumps(stats, indent=2))
        checks = {(r["question_id"], r["sample_index"]): r["step_check"] for r in records}
        return StageCounts(len(records), len(result.pairs),
                           {"stats": stats, "rejected_classes": rejected_classes(result.pairs, checks)})

    return run


def scored_chains(rewards_dir: Path, check_steps: bool = False) -> list[dict]:
    """A rewards stage's scored chains, with the sampled tokens when the rollouts kept their log-probs. With
    `check_steps`, each gets `step_check` from its source's step checker, worked out from the text here (not read
    from the stored column) so that rewards scored before the checker's `lucky` class existed are checked alike."""
    cols = ["question_id", "sample_index", "text", "value", "correct", "reason", "temperature", "finish_reason"]
    present = set(_parquet_columns(rewards_dir))
    if {"token_ids", "token_logprobs"} <= present:  # rollouts that kept their log-probs (older ones: no digest)
        cols += [c for c in SAMPLED_COLUMNS if c in present] + ["prompt_tokens"]
    records = read_table(rewards_dir, cols).to_pylist()
    if check_steps:
        from reasoner_ray.data.step_checks import step_check

        for r in records:
            r["step_check"] = step_check(r["question_id"], r["text"], bool(r["correct"]))
    return records


def preference_rows(config: Config, pairs, records: list[dict], rows: dict[str, VQARow], round_index: int,
                    sampler: str):
    """PreferenceRows of `pairs` built from `records` (scored chains of the rounds' rollouts; `sampler`: the model
    folder that sampled them, recorded as `sampling.model`). A chain the engine cut at `rollout.max_tokens`
    (finish reason `length`) is marked truncated like one cut by `pairs.truncate_words`: it never ended its turn,
    so training adds no end-of-turn token after it (on the chosen side that would teach stopping mid-sentence)."""
    by_sample = {(r["question_id"], r["sample_index"]): r for r in records}
    for p in pairs:
        row = rows[p.question_id]
        chosen = by_sample[(p.question_id, p.chosen_index)]
        rejected = by_sample[(p.question_id, p.rejected_index)]
        sampling = {"chosen_temperature": chosen["temperature"], "rejected_temperature": rejected["temperature"],
                    "max_tokens": config.rollout.max_tokens, "top_p": config.rollout.top_p, "model": sampler}
        pref = p.to_preference_row(row.question, row.image, prompt_messages(row, "cot"), round_index, sampling)
        pref.chosen_sampled, pref.rejected_sampled = _sampled_tokens(chosen), _sampled_tokens(rejected)
        pref.chosen_truncated |= chosen.get("finish_reason") == "length"
        pref.rejected_truncated |= rejected.get("finish_reason") == "length"
        yield pref


def _parquet_columns(folder: Path) -> list[str]:
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").schema.names


def _sampled_tokens(record: dict) -> SampledTokens | None:
    if record.get("token_ids") is None:
        return None
    return SampledTokens(token_ids=record["token_ids"], logprobs=record["token_logprobs"],
                         prompt_tokens=record.get("prompt_tokens"), prompt_digest=record.get("prompt_digest") or None)


def rows_by_id(config: Config, round_index: int, ids: set[str]) -> dict[str, VQARow]:
    """The rows of the questions the round's rollouts read, by the same reader and selection (so every id is found)."""
    from reasoner_ray.data.ray_source import row_from_record

    source = rollout_source(config, round_index)
    return {rec["id"]: row_from_record(rec) for rec in questions_of(source).iter_rows() if rec["id"] in ids}
