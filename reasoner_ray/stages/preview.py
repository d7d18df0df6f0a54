"""Sample a few CoT answers from the current model inside a Ray actor (the quickstart's first look).

A `VLLMGenerator` runs as a Ray actor; the driver reads a few questions, sends them, prints the samples.
"""

from __future__ import annotations

import logging

from reasoner_ray.core.config import Config
from reasoner_ray.core.config import DataSource
from reasoner_ray.data.readers import iter_rows

log = logging.getLogger(__name__)


def sample_preview(config: Config, model_path: str, num_questions: int = 4, n: int = 2) -> list[dict]:
    import ray

    from reasoner_ray.engines.vllm_generator import EngineSettings, VLLMGenerator

    source = DataSource(**{**config.data.eval.model_dump(), "limit": num_questions})
    rows = list(iter_rows(source))
    settings = EngineSettings(
        model_path=model_path,
        max_model_len=config.rollout.max_model_len,
        kv_cache_gib=config.rollout.kv_cache_gib,
        seed=config.run.seed,
    )
    Engine = ray.remote(num_cpus=1, num_gpus=1 if config.train.use_gpu else 0)(VLLMGenerator)
    engine = Engine.remote(settings)
    try:
        samples = ray.get(
            engine.generate.remote(rows, "cot", n=n, temperature=1.0, max_tokens=config.rollout.max_tokens, seed=config.run.seed)
        )
    finally:
        ray.get(engine.close.remote())
        ray.kill(engine)
    results = []
    for row, row_samples in zip(rows, samples):
        for i, s in enumerate(row_samples):
            results.append({"id": row.id, "question": row.question, "gold": row.answers[0], "sample": i, "text": s.text,
                            "finish_reason": s.finish_reason, "completion_tokens": s.completion_tokens})
    return results
