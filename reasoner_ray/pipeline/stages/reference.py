"""The `r<k>/reference` stage: each pair's reference log-probs, from the rollout engines where the reference sampled
the chain, else from a pass (train/reference.py)."""

from __future__ import annotations

from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageIO
from reasoner_ray.pipeline.stages.pairs import PAIRS_FILE


def reference_stage(config: Config, ref_model: str, pairs_path: Path):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.train.reference import compute_reference_logps

        out = io.output / PAIRS_FILE
        counts = compute_reference_logps(config, ref_model, str(pairs_path), str(out))
        inputs = sum(1 for line in pairs_path.open() if line.strip())
        return StageCounts(inputs, counts.get("written", 0), {"reference_model": ref_model, "counts": counts})

    return run
