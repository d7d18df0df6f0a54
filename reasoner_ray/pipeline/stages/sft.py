"""The `sft` stage: SFT on the CoT + direct mixture (Ray Train + DeepSpeed), the model placed at output/model."""

from __future__ import annotations

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageIO, place_model


def sft_stage(config: Config, base_model: str, rows_path: str):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.train.sft import run_sft

        result = run_sft(config, base_model, rows_path, str(io.work))
        model = place_model(result.model_dir, io)
        return StageCounts(result.counts.get("rows", 0), result.steps,
                           {"model": str(model), "metrics_path": result.history_path, "counts": result.counts})

    return run
