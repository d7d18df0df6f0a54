"""Teacher CoT distillation: stream rows through an OpenAI-compatible teacher, verify, write SFT data.

Entry point: `run_distillation(config, out_dir) -> DistillResult` (pipeline.py); script: jobs/distill.py.
"""

from reasoner_ray.distill.pipeline import DistillResult, run_distillation

__all__ = ["DistillResult", "run_distillation"]
