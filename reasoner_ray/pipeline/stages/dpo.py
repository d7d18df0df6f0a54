"""The `r<k>/dpo` stage: DPO of the policy on the round's pairs (Ray Train + DeepSpeed); a round without a pair carries
the policy over."""

from __future__ import annotations

import logging
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageIO, place_model

log = logging.getLogger(__name__)


def dpo_stage(config: Config, policy: str, pairs_path: Path):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.train.dpo import run_dpo

        inputs = sum(1 for line in pairs_path.open() if line.strip())
        if inputs == 0:
            # Every question was all-correct, all-wrong or outside the band: nothing to learn this round.
            log.warning("no preference pairs this round; the policy is carried over unchanged")
            model = place_model(policy, io)
            return StageCounts(0, 0, {"model": str(model), "skipped": "no pairs"})
        result = run_dpo(config, policy, str(pairs_path), str(io.work))
        model = place_model(result.model_dir, io)
        return StageCounts(inputs, result.steps, {"model": str(model), "metrics_path": result.history_path,
                                                  "counts": result.counts, "final": result.metrics})

    return run
