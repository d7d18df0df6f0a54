"""Teacher CoT distillation: stream rows through an OpenAI-compatible teacher, verify, write SFT data.

Entry point: `run_distillation(config, out_dir) -> DistillResult` (pipeline.py), then `check_outcome(result,
max_failed_fraction)` raises when the result is not usable; script: jobs/distill.py.
Imported lazily, so the stand-in teacher can use `request_key` without loading the client stack.
"""

from typing import Any

__all__ = ["DistillResult", "check_outcome", "run_distillation"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from reasoner_ray.distill import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
