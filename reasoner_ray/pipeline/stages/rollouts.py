"""The `r<k>/rollouts` stage: the round's questions (core/data_regime.py) sampled from the policy with the CoT
instruction, `rollout.samples_per_temperature` chains per temperature (vLLM actors, or adopted from the
evaluation's pass: pipeline/prefetch.py)."""

from __future__ import annotations

from reasoner_ray.core.config import Config
from reasoner_ray.core.data_regime import rollout_source
from reasoner_ray.operators.generation import GenerationPlan
from reasoner_ray.pipeline.prefetch import generate_or_adopt
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO


def rollout_plan(config: Config, round_index: int) -> GenerationPlan:
    r = config.rollout
    return GenerationPlan.rollouts(r.temperatures, r.samples_per_temperature, r.max_tokens, r.top_p, config.run.seed,
                                   round_index, r.ignore_eos, logprobs=keeps_logprobs(config))


def keeps_logprobs(config: Config) -> bool:
    """The rollouts keep each sampled token's log-prob when the reference pass reuses them or the pairs read them."""
    return config.dpo.reuse_sampled_logps or config.pairs.parting_logp_margin is not None


def rollouts_stage(config: Config, model_path: str, round_index: int) -> StageFn:
    def run(io: StageIO) -> StageCounts:
        n_in, n_out, extra = generate_or_adopt(config, io, model_path, rollout_source(config, round_index),
                                               rollout_plan(config, round_index), io.output)
        return StageCounts(n_in, n_out, {"model": model_path, **extra})

    return run
