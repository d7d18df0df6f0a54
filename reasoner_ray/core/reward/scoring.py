"""`score()`: one response against its gold answer(s), through the answer-type registry."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from reasoner_ray.core.reward.base import REGISTRY, UNPARSED, GoldAnswerError, Score
from reasoner_ray.core.reward.extract import extract_final_answer
from reasoner_ray.core.reward.normalize import simple_normalize, vqa_normalize
from reasoner_ray.core.reward.text import anls_normalize

# How answers of a type are compared when several humans gave them (the same normalization the metric uses).
_CONSENSUS_NORMALIZE = {"open": vqa_normalize, "yes_no": vqa_normalize, "anls": anls_normalize}


def score(response: str, gold: str | Sequence[str], answer_type: str, choices: Sequence[str] | None = None,
          direct: bool = False) -> Score:
    """Extract the final answer of `response` and score it against `gold` (one answer or several human answers).

    `direct=True` scores a reply to the paper's direct instruction ("Answer the question with a short answer."):
    it has no `### Answer:` line, so the whole reply is the answer (a final-answer line still wins if present).

    Raises GoldAnswerError when the gold is empty or unreadable for its type (even if the response is unparsed,
    so a bad row is never silently scored 0), ValueError for an unknown answer type.
    """
    try:
        gold_key = gold if isinstance(gold, str) else tuple(gold)
    except TypeError:  # None, NaN, a number: not an answer
        gold_key = None
    if gold_key is None or (not isinstance(gold_key, str) and not all(isinstance(g, str) for g in gold_key)):
        raise GoldAnswerError(f"gold answer is not text or a list of texts: {gold!r}")
    choices_key = tuple(choices) if choices is not None else None
    answer_kind, prepared = _prepared_gold(answer_type, gold_key, choices_key)
    answer = extract_final_answer(response)
    if answer is None and direct and response.strip():
        answer = response.strip()
    if answer is None:
        return Score(0.0, False, None, UNPARSED)
    return answer_kind.judge(answer, prepared)


@lru_cache(maxsize=65536)
def _prepared_gold(answer_type: str, gold: str | tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[Any, Any]:
    # Cached: a question's gold is read once, not once per sampled chain (32 per question in the paper).
    answer_kind = REGISTRY.get(answer_type)
    if answer_kind is None:
        raise ValueError(f"unknown answer type {answer_type!r}; registered: {sorted(REGISTRY)}")
    golds = (gold,) if isinstance(gold, str) else gold
    if not golds or any(not g.strip() for g in golds):
        raise GoldAnswerError(f"gold answer is empty: {gold!r}")
    return answer_kind, answer_kind.prepare(tuple(g.strip() for g in golds), choices)


def consensus_answer(golds: Sequence[str], answer_type: str) -> str:
    """The one answer a target writes for a question with several human answers: the most frequent answer after
    the type's normalization (VQA's for open and yes/no, ANLS's for anls, case and punctuation otherwise), spelled
    as its first occurrence; a tie goes to the answer that appears first, so a single answer is itself.

    Not `golds[0]`: VQA and TextVQA list ten answers in no particular order, and the first may be one the
    metric scores as wrong (one human of ten: value 0.3)."""
    if not golds:
        raise GoldAnswerError("no gold answer")
    normalize = _CONSENSUS_NORMALIZE.get(answer_type, simple_normalize)
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for gold in golds:
        key = normalize(gold)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, gold.strip())
    best = max(counts.values())
    return first[next(key for key in counts if counts[key] == best)]  # dicts keep first-appearance order
