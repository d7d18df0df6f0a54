"""The `r<k>/rewards` stage: every chain scored with its answer type's metric (operators/scoring.py), and where the
chains go wrong (core/diagnosis.py)."""

from __future__ import annotations

from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.generate import parquet_rows
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO
from reasoner_ray.pipeline.stages.evaluate import diagnosis_records


def rewards_stage(config: Config, rollouts_dir: Path) -> StageFn:
    def run(io: StageIO) -> StageCounts:
        import ray

        from reasoner_ray.core.diagnosis import diagnose
        from reasoner_ray.operators.scoring import score_batch

        ds = ray.data.read_parquet(str(rollouts_dir)).map_batches(score_batch, batch_format="pandas", num_cpus=0.5)
        ds.write_parquet(str(io.output))
        n_in = parquet_rows(rollouts_dir)
        band = tuple(config.pairs.accuracy_band)
        return StageCounts(n_in, parquet_rows(io.output), {"diagnosis": diagnose(diagnosis_records(io.output), band)})

    return run
