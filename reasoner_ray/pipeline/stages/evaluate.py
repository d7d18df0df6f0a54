"""The evaluation stages, `r0/eval` (the SFT model) and `r<k>/eval`: greedy CoT and direct accuracy of the round's
model on data.eval (pipeline/evaluation.py, shared with jobs/evaluate.py), with later stages' generation from the
same model done in the same pass (pipeline/prefetch.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.evaluation import evaluate_source
from reasoner_ray.pipeline.generate import ModelBackend, read_table
from reasoner_ray.pipeline.prefetch import Prefetch
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO


def eval_stage(config: Config, model_path: str, round_index: int, prefetch: Sequence[Prefetch] = ()) -> StageFn:
    """Greedy CoT and direct accuracy of `model_path` on data.eval (pipeline/evaluation.py, shared with
    jobs/evaluate.py); the manifest entry carries each style's accuracy and the whole summary.
    `prefetch`: later stages' generation from the same model, done in the same pass."""

    def run(io: StageIO) -> StageCounts:
        import shutil

        for p in prefetch:
            shutil.rmtree(p.folder, ignore_errors=True)
        # Task names go into folder names (task=<name>) in the pass's output: no slashes.
        result = evaluate_source(config, ModelBackend(model_path), config.data.eval, io.output, round_index,
                                 {f"next{i}": p.task() for i, p in enumerate(prefetch)})
        summary = result.summary
        extra = {style: {"accuracy": s["all"]["accuracy"], "stderr": s["all"]["stderr"], "unscored": s["all"]["unscored"]}
                 for style, s in summary.items()}
        extra["summary"] = summary  # every group (answer types, tags) for the report
        cot = diagnosis_records(io.output / "scored", "cot")
        if any(r["step_check"] for r in cot):  # sources with a step checker: where greedy CoT goes wrong
            from reasoner_ray.core.diagnosis import diagnose

            extra["diagnosis"] = diagnose(cot)
        for i, p in enumerate(prefetch):
            p.record(io.name, result.also_questions[f"next{i}"])
        if prefetch:
            extra["also_generated"] = [p.stage for p in prefetch]
        return StageCounts(result.questions, result.replies, extra)

    return run


def diagnosis_records(scored: Path, style: str | None = None) -> list[dict]:
    """Scored chains with what core/diagnosis.py reads (of one style, when given)."""
    cols = ["question_id", "value", "reason", "step_check"] + (["style"] if style else [])
    records = read_table(scored, cols).to_pylist()
    return [r for r in records if style is None or r["style"] == style]
