"""Closed answer types: `multiple_choice` (an option, by letter or by text) and `yes_no`."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from reasoner_ray.core.reward.base import (
    NOT_AN_OPTION,
    NOT_YES_NO,
    GoldAnswerError,
    Score,
    register,
)
from reasoner_ray.core.reward.normalize import simple_normalize, vqa_normalize
from reasoner_ray.core.reward.text import consensus_accuracy

# "B", "(B)", "[B]", "B.", "B)", "B:", "B) cat", "B. cat", "B - cat", "B (cat)", "Option B", "The answer is (B)".
# A letter must stand alone or be followed by a delimiter, so the article in "A cat" is not read as option A.
_LEAD_IN = re.compile(r"^(?:the\s+)?(?:(?:correct|final|best)\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*", re.I)
_LETTER = re.compile(r"^[(\[]?([A-Za-z])(?:[)\]]|[.:,](?!\w)|\s+[(\-–—]|\s*$)")
_LETTERS = string.ascii_uppercase


@dataclass(frozen=True, slots=True)
class OptionGold:
    index: int  # the gold option, 0 = A
    options: tuple[str, ...]  # normalized option texts; empty when the question came without choices


@register("multiple_choice")
class MultipleChoice:
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> OptionGold:
        options = tuple(simple_normalize(c) for c in choices or ())
        if len(set(options)) != len(options):
            raise GoldAnswerError(f"options are not distinct after normalization: {choices}")
        indexes = {self._gold_index(gold, options) for gold in golds}
        if len(indexes) != 1:
            raise GoldAnswerError(f"gold answers {golds} name different options")
        return OptionGold(indexes.pop(), options)

    @staticmethod
    def _gold_index(gold: str, options: tuple[str, ...]) -> int:
        # The option text first, as prompts.gold_for_response does, so an option that is itself a letter
        # is read as that option.
        normalized = simple_normalize(gold)
        if normalized in options:
            return options.index(normalized)
        letter = _letter_index(gold, len(options) or len(_LETTERS))
        if letter is None:
            raise GoldAnswerError(f"gold {gold!r} is neither an option letter nor an option text of {options}")
        return letter

    def judge(self, answer: str, gold: OptionGold) -> Score:
        picked = self.option_index(answer, gold.options)
        if picked is None:
            return Score(0.0, False, answer, NOT_AN_OPTION)
        right = picked == gold.index
        return Score(1.0 if right else 0.0, right, answer)

    @staticmethod
    def option_index(answer: str, options: tuple[str, ...]) -> int | None:
        """The option an answer names: by letter first (the prompt asks for a letter), then by option text."""
        stripped = _LEAD_IN.sub("", answer, count=1)
        letter = _letter_index(stripped, len(options) or len(_LETTERS))
        if letter is not None:
            return letter
        for text in (answer, stripped):  # the whole answer first: an option may itself start with "choice"
            normalized = simple_normalize(text)
            if normalized in options:
                return options.index(normalized)
        return None


def _letter_index(text: str, option_count: int) -> int | None:
    match = _LETTER.match(text.strip())
    if match is None:
        return None
    index = _LETTERS.index(match.group(1).upper())
    return index if index < option_count else None


_YES_NO = frozenset({"yes", "no"})


@register("yes_no")
class YesNo:
    """The first word decides ("Yes, it is round." is yes). With ten human answers, VQA accuracy as for `open`."""

    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[str, ...]:
        normalized = tuple(vqa_normalize(g) for g in golds)
        if not _YES_NO.intersection(normalized):
            raise GoldAnswerError(f"yes/no gold {golds} contains neither yes nor no")
        return normalized

    def judge(self, answer: str, gold: tuple[str, ...]) -> Score:
        words = vqa_normalize(answer).split(maxsplit=1)
        if not words or words[0] not in _YES_NO:
            return Score(0.0, False, answer, NOT_YES_NO)
        value, right = consensus_accuracy(words[0], gold)
        return Score(value, right, answer)
