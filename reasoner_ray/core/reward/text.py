"""Free-text answer types: `open` (VQA accuracy over human answers) and `anls` (document VQA)."""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

from reasoner_ray.core.reward.base import Score, register
from reasoner_ray.core.reward.normalize import vqa_normalize

# VQA and TextVQA collect ten human answers per question; the leave-one-out formula is defined for that
# protocol. With fewer answers (easy-VQA has one) an answer is right when it matches any of them.
VQA_HUMAN_ANSWERS = 10
# VQA: "an answer is deemed 100% accurate if at least 3 humans provided that exact answer".
VQA_AGREEING_HUMANS = 3
ANLS_THRESHOLD = 0.5


def consensus_accuracy(answer: str, golds: tuple[str, ...]) -> tuple[float, bool]:
    """(value, correct) of a normalized answer against normalized human answers."""
    matches = golds.count(answer)
    humans = len(golds)
    if humans < VQA_HUMAN_ANSWERS:
        return (1.0, True) if matches else (0.0, False)
    # The official mean over the `humans` leave-one-out subsets of min(1, matches_in_subset / 3), in closed form:
    # leaving out one of the matching answers leaves matches - 1 of them, leaving out any other leaves matches.
    with_one_left_out = matches * min(1.0, (matches - 1) / VQA_AGREEING_HUMANS) if matches else 0.0
    with_other_left_out = (humans - matches) * min(1.0, matches / VQA_AGREEING_HUMANS)
    return (with_one_left_out + with_other_left_out) / humans, matches >= VQA_AGREEING_HUMANS


@register("open")
class OpenAnswer:
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[str, ...]:
        return tuple(vqa_normalize(g) for g in golds)

    def judge(self, answer: str, gold: tuple[str, ...]) -> Score:
        value, right = consensus_accuracy(vqa_normalize(answer), gold)
        return Score(value, right, answer)


def anls_normalize(text: str) -> str:
    """The ANLS reference implementation's normalization: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


@register("anls")
class AnlsAnswer:
    """Max over gold answers of 1 - normalized Levenshtein distance, 0 when that distance is >= 0.5.
    Correct only for an exact match (value 1): a near miss earns partial credit but is not a right answer."""

    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[str, ...]:
        return tuple(anls_normalize(g) for g in golds)

    def judge(self, answer: str, gold: tuple[str, ...]) -> Score:
        normalized = anls_normalize(answer)
        best = 0.0
        for reference in gold:
            # score_cutoff makes rapidfuzz return 1.0 (and stop early) past the threshold.
            distance = Levenshtein.normalized_distance(normalized, reference, score_cutoff=ANLS_THRESHOLD)
            if distance < ANLS_THRESHOLD:
                best = max(best, 1.0 - distance)
        return Score(best, best == 1.0, answer)
