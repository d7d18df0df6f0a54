"""The `distill` stage: teacher rationales for the rationale pool, verified (reasoner_ray/distill)."""

from __future__ import annotations

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageIO

DISTILLED_ROWS = "rows.jsonl"  # verified rows with rationales, in the distill stage's output


def distill_stage(config: Config):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.pipeline.distillation import check_outcome, run_distillation

        result = run_distillation(config, str(io.output))
        check_outcome(result, config.distill.max_failed_fraction)  # not usable: the stage fails, a rerun resends
        return StageCounts(result.input_rows, result.verified, {"rejected": dict(result.rejected_by_reason),
                                                                 "sft_rows": result.paths["rows.jsonl"],
                                                                 "cost_usd": result.summary.get("estimated_cost_usd")})

    return run
