"""The `r0/diagnose` stage: the SFT model's sampled chains on data.validation, where they go wrong (the step
checker's classes) and how many questions fall in the pair band (core/diagnosis.py)."""

from __future__ import annotations

import json

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.prefetch import generate_or_adopt
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO
from reasoner_ray.pipeline.stages.evaluate import diagnosis_records
from reasoner_ray.storage import write_atomic


def diagnose_stage(config: Config, model_path: str) -> StageFn:
    """r0/diagnose: `eval.samples` CoT chains per `data.validation` question from the SFT model, scored, and
    where they go wrong counted (core/diagnosis.py): the step checker's classes of the wrong chains and how many
    questions have a sample accuracy inside `pairs.accuracy_band` (where DPO pairs come from)."""

    def run(io: StageIO) -> StageCounts:
        import ray

        from reasoner_ray.core.diagnosis import diagnose
        from reasoner_ray.operators.scoring import score_batch
        from reasoner_ray.pipeline.stages.verify import verify_plan

        n_q, n_out, extra = generate_or_adopt(config, io, model_path, config.data.validation, verify_plan(config, 0),
                                              io.output / "generated")
        ray.data.read_parquet(str(io.output / "generated")).map_batches(score_batch, batch_format="pandas",
                                                                        num_cpus=0.5).write_parquet(str(io.output / "scored"))
        diagnosis = diagnose(diagnosis_records(io.output / "scored"), tuple(config.pairs.accuracy_band))
        write_atomic(io.output / "diagnosis.json", json.dumps(diagnosis, indent=2))
        return StageCounts(n_q, n_out, {"diagnosis": diagnosis, **extra})

    return run
