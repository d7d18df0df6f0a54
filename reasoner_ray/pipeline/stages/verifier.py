"""The `r<k>/verifier` stage: a separate verifier trained as V-STaR does (arXiv 2402.06457).

From the SFT model, plain DPO (no NLL term, reference = the SFT model) on correct vs incorrect chains of every
round so far (rounds 1..k's rollouts, scored): per question and round, up to `verifier.max_pairs_per_question`
(correct, incorrect) combinations, with no accuracy band (a question with one right chain in eight still says
which steps are wrong), on whole chains (`verifier.whole_chains`, as V-STaR) or aimed at the step that goes wrong
as the round's pairs are (`pairs.prefer_shared_prefix`, `pairs.cut_after_parting`); `pairs.consistent_chosen`
and `pairs.sound_chosen` apply to both, `pairs.steps_rejected` and `pairs.conclusions_rejected` do not (the
verifier has to rank misreads and wrong conclusions too).
The reference log-probs come from the rollout engines where the SFT model sampled the chain (round 1), else from
a pass. The verify stage then ranks chains by this model's implicit reward beside the policy's. Output:
`pairs.jsonl` (with reference log-probs), `stats.json` and `model/` (none when no round gave a pair: the record
says `skipped`, and the verify stage ranks by the policy alone).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO
from reasoner_ray.storage import write_atomic

log = logging.getLogger(__name__)


def verifier_config(config: Config) -> Config:
    """The DPO settings of the verifier's training: plain sigmoid DPO against the SFT model."""
    v = config.verifier
    dpo = config.dpo.model_copy(update={"lr": v.lr, "beta": v.beta, "epochs": v.epochs, "loss": "sigmoid",
                                        "global_batch_size": v.global_batch_size, "nll_weight": 0.0,
                                        "label_smoothing": 0.0, "reference": "sft"})
    return config.model_copy(update={"dpo": dpo})


def verifier_pair_options(config: Config) -> dict:
    """build_pairs' options for the verifier: every (correct, incorrect) combination up to the cap, no band; whole
    chains, or the round's aimed pairs."""
    whole = config.verifier.whole_chains
    return {"band": (0.0, 1.0), "max_pairs": config.verifier.max_pairs_per_question,
            "prefer_shared_prefix": config.pairs.prefer_shared_prefix and not whole,
            "cut_after_parting": None if whole else config.pairs.cut_after_parting,
            "consistent_chosen": config.pairs.consistent_chosen, "sound_chosen": config.pairs.sound_chosen}


def verifier_stage(config: Config, sft_model: str, rounds: list[tuple[int, Path, str]]) -> StageFn:
    """`rounds`: (round, its rewards folder, the model that sampled its rollouts) for every round so far."""

    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.core.pairs import ScoredSample, build_pairs
        from reasoner_ray.pipeline.runner import place_model
        from reasoner_ray.pipeline.stages.pairs import (
            preference_rows,
            rows_by_id,
            scored_chains,
        )
        from reasoner_ray.train.dpo import run_dpo
        from reasoner_ray.train.reference import compute_reference_logps

        pairs_path, stats = io.work / "pairs.jsonl", {}
        with pairs_path.open("w") as fh:
            for round_index, rewards_dir, sampler in rounds:
                records = scored_chains(rewards_dir, check_steps=config.pairs.sound_chosen)
                result = build_pairs((ScoredSample.from_record(r) for r in records),
                                     seed=config.run.seed * 1000 + 500 + round_index, **verifier_pair_options(config))
                rows = rows_by_id(config, round_index, {p.question_id for p in result.pairs})
                for pref in preference_rows(config, result.pairs, records, rows, round_index, sampler):
                    fh.write(pref.model_dump_json() + "\n")
                stats[f"r{round_index}"] = result.stats.as_dict()
        write_atomic(io.output / "stats.json", json.dumps(stats, indent=2))
        pairs = sum(s["pairs"] for s in stats.values())
        if pairs == 0:
            log.warning("no (correct, incorrect) pair in any round's rollouts: no verifier to train; the verify stage "
                        "ranks by the policy only")
            return StageCounts(0, 0, {"skipped": "no pairs", "stats": stats})
        trained_config = verifier_config(config)
        with_ref = io.output / "pairs.jsonl"
        ref_counts = compute_reference_logps(trained_config, sft_model, str(pairs_path), str(with_ref))
        result = run_dpo(trained_config, sft_model, str(with_ref), str(io.work))
        model = place_model(result.model_dir, io)
        return StageCounts(pairs, result.steps, {"model": str(model), "metrics_path": result.history_path,
                                                 "counts": result.counts, "reference": ref_counts, "stats": stats,
                                                 "final": result.metrics})

    return run
