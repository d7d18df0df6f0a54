"""The reward: extract a response's final answer and score it with its answer type's benchmark metric.

Answer types live in a registry filled by `@register("name")`; importing this package registers the built-in
ones (multiple_choice, yes_no, number, open, anls, math, and the benchmarks' own relaxed and mathvista). docs/evaluation.md states each type's rule.
"""

from reasoner_ray.core.reward import choice, math_answer, numeric, reference_rules, text  # noqa: F401  (they register)
from reasoner_ray.core.reward.base import (
    GOLD_ERROR,
    NOT_AN_OPTION,
    NOT_YES_NO,
    REGISTRY,
    TIMEOUT,
    UNPARSED,
    AnswerType,
    GoldAnswerError,
    Score,
    register,
)
from reasoner_ray.core.reward.extract import ANSWER_MARKER, extract_final_answer
from reasoner_ray.core.reward.scoring import consensus_answer, score

__all__ = [
    "ANSWER_MARKER",
    "GOLD_ERROR",
    "NOT_AN_OPTION",
    "NOT_YES_NO",
    "REGISTRY",
    "TIMEOUT",
    "UNPARSED",
    "AnswerType",
    "GoldAnswerError",
    "Score",
    "consensus_answer",
    "extract_final_answer",
    "register",
    "score",
]
