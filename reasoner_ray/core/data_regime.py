"""Which train questions get a teacher rationale, which only their short answer, and which each round samples.

The paper's data regime (`data.rationale_fraction` f < 1): the train split's first N = `data.train.limit` good
rows are cut in two, in order. The first K = round(f x N) are the rationale pool: distillation asks the teacher
about these only, and SFT trains on their CoT and direct forms. The other N - K are the short-answer pool: SFT
trains on their direct form only (no rationale ever reaches training). Round r's rollouts take the next
`rollout.limit` questions after the rationale pool: round 1 the first L of the short-answer pool, round 2 the
next L, and so on (past N when the pool runs out), so every round samples fresh questions the policy never had
a rationale for, on-policy. With `data.short_answers_in_sft: false` SFT leaves the short-answer pool out
altogether: it is then only what the rounds sample and reward.

With f = 1 (the default) every row of `data.train` goes to the teacher and every round samples the same first
`rollout.limit` train questions. Pure: DataSource arithmetic, no reading.
"""

from __future__ import annotations

from reasoner_ray.core.config import Config, DataSource


def _split(config: Config) -> int | None:
    """K, the size of the rationale pool; None when every train row gets a rationale."""
    fraction, limit = config.data.rationale_fraction, config.data.train.limit
    if fraction >= 1.0:
        return None
    assert limit is not None  # the config refuses a fraction without data.train.limit
    return max(1, round(fraction * limit))


def rationale_pool(config: Config) -> DataSource:
    """The train rows the teacher is asked about (all of data.train when f = 1)."""
    k = _split(config)
    return config.data.train if k is None else config.data.train.model_copy(update={"limit": k})


def short_answer_pool(config: Config) -> DataSource | None:
    """The train rows SFT sees only as short answers; None when f = 1 or SFT leaves them out."""
    k = _split(config)
    if k is None or not config.data.short_answers_in_sft:
        return None
    train = config.data.train
    return train.model_copy(update={"offset": train.offset + k, "limit": train.limit - k})


def rollout_source(config: Config, round_index: int) -> DataSource:
    """The questions round `round_index` (1-based) samples."""
    k = _split(config)
    train = config.data.train
    if k is None:
        limit = config.rollout.limit if config.rollout.limit is not None else train.limit
        return train.model_copy(update={"limit": limit})
    size = config.rollout.limit if config.rollout.limit is not None else train.limit - k
    return train.model_copy(update={"offset": train.offset + k + (round_index - 1) * size, "limit": size})
