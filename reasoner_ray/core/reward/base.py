"""The reward's vocabulary: the `Score` result, the data error, and the answer-type registry.

An answer type is a pair of steps. `prepare` reads the gold answer(s) once per question (it is cached, and it
is where an unreadable gold raises `GoldAnswerError`); `judge` compares one extracted answer with the prepared
gold. Types register themselves with `@register("name")`; `score()` looks them up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

# Reasons attached to a Score that is 0 for a cause other than a plain wrong answer.
UNPARSED = "unparsed"  # the response has no final answer
NOT_AN_OPTION = "not_an_option"  # multiple choice: the answer names no option
NOT_YES_NO = "not_yes_no"  # yes/no: the answer is neither
TIMEOUT = "timeout"  # math: the equivalence check ran out of time (or its worker died)
GOLD_ERROR = "gold_error"  # batch scoring: the row's gold raised GoldAnswerError; scored 0, never rewarded


class GoldAnswerError(ValueError):
    """The gold answer is empty or cannot be read: a data error, never scored (and never rewarded)."""


@dataclass(frozen=True, slots=True)
class Score:
    """One response scored against its gold answer(s).

    value: the benchmark metric in [0, 1]. correct: whether the answer counts as right (see docs/evaluation.md;
    for graded metrics this is stricter than value > 0). parsed: the extracted final answer, None when there is
    none. reason: why the score is 0 besides being wrong (UNPARSED, NOT_AN_OPTION, ...), else None.
    """

    value: float
    correct: bool
    parsed: str | None
    reason: str | None = None


Gold = TypeVar("Gold")


class AnswerType(Protocol[Gold]):
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> Gold:
        """Read the gold answers (each a non-empty string); raise GoldAnswerError when they cannot be read."""
        ...

    def judge(self, answer: str, gold: Gold) -> Score:
        """Score one extracted final answer (non-empty) against the prepared gold."""
        ...


REGISTRY: dict[str, AnswerType[Any]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: instantiate the answer type and file it under `name`."""

    def add(cls: type) -> type:
        if name in REGISTRY:
            raise ValueError(f"answer type {name!r} is already registered")
        REGISTRY[name] = cls()
        return cls

    return add
