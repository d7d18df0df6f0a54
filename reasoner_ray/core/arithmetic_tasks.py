"""Multi-step arithmetic on four printed digits: question kinds, worked steps, rationales and a step checker.

The `arithmetic` data source (reasoner_ray/data/arithmetic.py) prints four digits (1-9) in a clean pixel font,
one per cell of a 2x2 grid, each in its own ink colour (red, blue, green, orange; the cells are shuffled), and
asks one question from the registry below. The question names digits by colour only: the numbers live in the
image. Every kind combines all four digits in three steps (products, sums with carries, a comparison or an
option look-up), so reading is easy and the reasoning is where a chain goes wrong. Pure: no images, no I/O.

    kind = QUESTION_KINDS["two_products"]
    kind.answer([3, 7, 5, 2])       -> "31"
    kind.step_texts([3, 7, 5, 2])   -> ["3 x 7 = 21.", "5 x 2 = 10.", "21 + 10 = 31."]

`check_chain` reads a sampled chain against the row's annotation and says where it first went wrong: the
reading of the digits, an arithmetic step, a step built on the wrong numbers, or the conclusion.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from reasoner_ray.core.diagnosis import (
    ARITHMETIC_SLIP,
    CORRECT,
    INCOMPLETE,
    LUCKY,
    MISREAD,
    NO_STEPS,
    STEP_ERRORS,
    WRONG_CONCLUSION,
    WRONG_OPERANDS,
)
from reasoner_ray.core.digit_tasks import INK_COLORS, listed

DIGITS = range(1, 10)
OPS: dict[str, Callable[[int, int], int]] = {"+": lambda a, b: a + b, "-": lambda a, b: a - b,
                                             "x": lambda a, b: a * b}


@dataclass(frozen=True)
class Step:
    """`a op b = result`, or a conclusion over a value (`greater`: "21 is greater than 10."; `option`)."""

    op: str
    a: int
    b: int | str
    result: int | str

    def text(self) -> str:
        if self.op == "greater":
            return f"{self.a} is {'' if self.result == 'yes' else 'not '}greater than {self.b}."
        if self.op == "option":
            return f"{self.a} is option {self.result}."
        return f"{self.a} {self.op} {self.b} = {self.result}."


def _arith(op: str, a: int, b: int) -> Step:
    return Step(op, a, b, OPS[op](a, b))


@dataclass(frozen=True)
class ArithmeticKind:
    """One kind of question: its text, answer type, and its program over the digits (red, blue, green, orange)."""

    name: str
    answer_type: str
    question: str
    program: Callable[[list[int]], list[Step]]  # the worked steps; the last one's result is the value asked for

    def steps(self, digits: list[int]) -> list[Step]:
        return self.program(digits)

    def step_texts(self, digits: list[int]) -> list[str]:
        return [s.text() for s in self.steps(digits)]

    def value(self, digits: list[int]) -> int:
        """The number the question computes (for multiple choice, the option's text)."""
        steps = [s for s in self.steps(digits) if s.op in OPS]
        return int(steps[-1].result)

    def answer(self, digits: list[int]) -> str:
        if self.answer_type == "yes_no":
            return str(self.steps(digits)[-1].result)
        return str(self.value(digits))


QUESTION_KINDS: dict[str, ArithmeticKind] = {}


def register(kind: ArithmeticKind) -> ArithmeticKind:
    QUESTION_KINDS[kind.name] = kind
    return kind


def _mul_add_add(d: list[int]) -> list[Step]:
    s1 = _arith("x", d[0], d[1])
    s2 = _arith("+", s1.result, d[2])
    return [s1, s2, _arith("+", s2.result, d[3])]


def _add_mul_add(d: list[int]) -> list[Step]:
    s1 = _arith("+", d[0], d[1])
    s2 = _arith("x", s1.result, d[2])
    return [s1, s2, _arith("+", s2.result, d[3])]


def _two_products(d: list[int]) -> list[Step]:
    s1, s2 = _arith("x", d[0], d[1]), _arith("x", d[2], d[3])
    return [s1, s2, _arith("+", s1.result, s2.result)]


def _add_sub_sub(d: list[int]) -> list[Step]:
    s1 = _arith("+", d[0], d[1])
    s2 = _arith("-", s1.result, d[2])
    return [s1, s2, _arith("-", s2.result, d[3])]


def _compare_products(d: list[int]) -> list[Step]:
    s1, s2 = _arith("x", d[0], d[1]), _arith("x", d[2], d[3])
    return [s1, s2, Step("greater", s1.result, s2.result, "yes" if s1.result > s2.result else "no")]


def _mul_sub_sub(d: list[int]) -> list[Step]:
    s1 = _arith("x", d[0], d[1])
    s2 = _arith("-", s1.result, d[2])
    return [s1, s2, _arith("-", s2.result, d[3])]


# Answer types spread over the reward module's: exact numbers (`open`; every value here is >= 0, which VQA's
# normalization needs: it strips a minus sign), signed small numbers (`number`: exact below 20, where ChartQA's
# 5% tolerance is under one), yes/no and an option letter.
register(ArithmeticKind("mul_add_add", "open", "What is red x blue + green + orange?", _mul_add_add))
register(ArithmeticKind("add_mul_add", "open", "What is (red + blue) x green + orange?", _add_mul_add))
register(ArithmeticKind("two_products", "open", "What is red x blue + green x orange?", _two_products))
register(ArithmeticKind("add_sub_sub", "number", "What is red + blue - green - orange?", _add_sub_sub))
register(ArithmeticKind("compare_products", "yes_no", "Is red x blue greater than green x orange?",
                        _compare_products))
register(ArithmeticKind("choice", "multiple_choice", "Which option is red x blue - green - orange?", _mul_sub_sub))


def options(value: int, rng: random.Random, n: int = 4) -> list[str]:
    """`n` distinct options, one of them `value`; the others are the slips a wrong step makes."""
    near = [value + off for off in (-10, -2, -1, 1, 2, 10)]
    picked = [value] + rng.sample(near, n - 1)
    rng.shuffle(picked)
    return [str(v) for v in picked]


# One wording for the reading and one for the conclusion: two chains then share their words up to the step where
# one goes wrong, which is where a preference pair should part (core/pairs.py, pairs.prefer_shared_prefix).
READ = ("The digits are {listed}.",)
CONCLUDE = ("So the answer is {answer}.",)


def rationale(kind_name: str, digits: list[int], answer: str, rng: random.Random,
              choices: list[str] | None = None) -> str:
    """Read the digits, work the steps, conclude at `answer` (no `### Answer:` line). For multiple choice the
    option step names the letter whose text is the value."""
    kind = QUESTION_KINDS[kind_name]
    parts = [rng.choice(READ).format(listed=listed(digits))]
    parts += kind.step_texts(digits)
    if kind.answer_type == "multiple_choice":
        letter = chr(ord("A") + (choices or []).index(str(kind.value(digits)))) if choices else answer
        parts.append(Step("option", kind.value(digits), "", letter).text())
    parts.append(rng.choice(CONCLUDE).format(answer=answer))
    return " ".join(parts)


def corpus_sentences() -> list[str]:
    """Text for training the tiny tokenizer: the questions, phrasings and every arithmetic fact the kinds use."""
    out = [kind.question for kind in QUESTION_KINDS.values()]
    out += [t.format(listed=listed([1, 2, 3, 4])) for t in READ]
    facts: set[str] = set()
    for a in DIGITS:
        for b in DIGITS:
            facts.add(f"{a} x {b} = {a * b}.")
            facts.add(f"{a} + {b} = {a + b}.")
    for s in range(2, 19):
        for d in DIGITS:
            facts.add(f"{s} x {d} = {s * d}.")
            facts.add(f"{s} - {d} = {s - d}.")
    for p in range(1, 163):
        for d in DIGITS:
            facts.add(f"{p} + {d} = {p + d}.")
            facts.add(f"{p - 9} - {d} = {p - 9 - d}.")
    out += sorted(facts)
    out += [f"{a} is greater than {b}. {a} is not greater than {b}." for a in range(0, 82, 3) for b in range(0, 82, 7)]
    out += [f"{v} is option {letter}." for v in range(-20, 82) for letter in "ABCD"]
    return out


# --- the step checker (its classes: core/diagnosis.py) ------------------------------------------------------

_READ = re.compile(r"\b(red|blue|green|orange) (\d+)\b")
_STEP = re.compile(r"(-?\d+) ([x+-]) (-?\d+) = (-?\d+)")
_GREATER = re.compile(r"(-?\d+) is (not )?greater than (-?\d+)")
_OPTION = re.compile(r"(-?\d+) is option ([A-Z])")


def parse_steps(text: str) -> tuple[dict[str, int], list[Step]]:
    """(colour -> digit as read, steps in order) of a chain written in the rationales' shape."""
    first_step = min((m.start() for rx in (_STEP, _GREATER, _OPTION) for m in [rx.search(text)] if m),
                     default=len(text))
    reading: dict[str, int] = {}
    for color, digit in _READ.findall(text[:first_step]):
        reading.setdefault(color, int(digit))
    found: list[tuple[int, Step]] = []
    for m in _STEP.finditer(text):
        found.append((m.start(), Step(m.group(2), int(m.group(1)), int(m.group(3)), int(m.group(4)))))
    for m in _GREATER.finditer(text):
        found.append((m.start(), Step("greater", int(m.group(1)), int(m.group(3)), "no" if m.group(2) else "yes")))
    for m in _OPTION.finditer(text):
        found.append((m.start(), Step("option", int(m.group(1)), "", m.group(2))))
    return reading, [step for _, step in sorted(found, key=lambda f: f[0])]


def _step_is_true(step: Step, choices: list[str] | None) -> bool:
    if step.op in OPS:
        return OPS[step.op](step.a, int(step.b)) == step.result
    if step.op == "greater":
        return (step.a > int(step.b)) == (step.result == "yes")
    letter = str(step.result)
    index = ord(letter) - ord("A")
    return bool(choices) and 0 <= index < len(choices) and choices[index] == str(step.a)


def check_chain(text: str, kind_name: str, digits: list[int], correct: bool,
                choices: list[str] | None = None) -> str:
    """Where a chain first went wrong, from the row's annotation (kind and digits). `correct` is the reward's
    verdict on the final answer. A wrong answer: MISREAD, ARITHMETIC_SLIP, WRONG_OPERANDS, WRONG_CONCLUSION,
    INCOMPLETE or NO_STEPS. A right answer: LUCKY when a digit it read or a step it wrote is wrong, else CORRECT
    (steps left unwritten are not wrong)."""
    error = _first_error(text, kind_name, digits, choices)
    if correct:
        return LUCKY if error in (MISREAD, *STEP_ERRORS) else CORRECT
    return error or WRONG_CONCLUSION  # every step right, the final answer wrong


def _first_error(text: str, kind_name: str, digits: list[int], choices: list[str] | None) -> str | None:
    """The class of the first wrong reading or step; INCOMPLETE or NO_STEPS when the written ones are right but
    too few; None when every expected step is written and right."""
    reading, steps = parse_steps(text)
    truth = dict(zip(INK_COLORS, digits))
    if reading and any(reading.get(color) != digit for color, digit in truth.items()):
        return MISREAD
    expected = QUESTION_KINDS[kind_name].steps(digits)
    if QUESTION_KINDS[kind_name].answer_type == "multiple_choice" and choices:
        value = QUESTION_KINDS[kind_name].value(digits)
        expected = expected + [Step("option", value, "", chr(ord("A") + choices.index(str(value))))]
    if not steps:
        return NO_STEPS if not reading else INCOMPLETE
    for got, want in zip(steps, expected):
        if got == want:
            continue
        if (got.op, got.a, got.b) == (want.op, want.a, want.b) or not _step_is_true(got, choices):
            return ARITHMETIC_SLIP if got.op in OPS else WRONG_CONCLUSION
        return WRONG_OPERANDS
    if len(steps) < len(expected):
        return INCOMPLETE
    return None
