"""`number`: ChartQA's relaxed accuracy (a prediction within 5% of the gold number is right).

Differences from the reference (pix2struct's relaxed_correctness), both asked for by the project: a `%` sign is
dropped rather than dividing by 100 (the teacher is told to write no `%`, and "12%" should match "12"), and a gold
of 0 needs an exact 0 instead of falling back to string comparison. Thousands separators, a leading currency sign
and trailing units are dropped ("$1,234 million" reads 1234). A gold that is not a number is compared as
normalized text. Decimal arithmetic keeps the 5% boundary exact (1.05 vs 1 is within tolerance).
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from reasoner_ray.core.reward.base import Score, register
from reasoner_ray.core.reward.normalize import simple_normalize

RELATIVE_TOLERANCE = Decimal("0.05")
# A number, optionally signed and behind a currency sign, then anything without digits (a `%`, a unit).
# "2019-2020" or "12 to 15" keep digits after the number, so they are not numbers but text.
_NUMBER = re.compile(
    r"^[$€£¥]?\s*(?P<sign>[-+−–]?)\s*[$€£¥]?\s*(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?P<rest>\D*)$"
)
_MINUS_SIGNS = frozenset("-−–")


@lru_cache(maxsize=65536)
def parse_number(text: str) -> Decimal | None:
    match = _NUMBER.match(text.strip())
    if match is None:
        return None
    value = Decimal(match.group("digits").replace(",", ""))
    return -value if match.group("sign") in _MINUS_SIGNS else value


@register("number")
class NumberAnswer:
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[Decimal | str, ...]:
        """Each gold as a Decimal, or as normalized text when it is not a number."""
        return tuple(_number_or_text(g) for g in golds)

    def judge(self, answer: str, gold: tuple[Decimal | str, ...]) -> Score:
        predicted = _number_or_text(answer)
        right = any(_relaxed_match(predicted, reference) for reference in gold)
        return Score(1.0 if right else 0.0, right, answer)


def _number_or_text(text: str) -> Decimal | str:
    number = parse_number(text)
    return number if number is not None else simple_normalize(text)


def _relaxed_match(predicted: Decimal | str, gold: Decimal | str) -> bool:
    if isinstance(gold, str) or isinstance(predicted, str):
        return predicted == gold  # text only ever equals text
    return abs(predicted - gold) <= RELATIVE_TOLERANCE * abs(gold)
