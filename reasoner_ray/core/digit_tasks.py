"""Multi-step arithmetic questions about the handwritten digits of a composite image, and their worked steps.

The `digits` data source (reasoner_ray/data/digits.py) draws 2-4 real handwritten digits into one image, each
in its own ink colour (red, blue, green, orange, in that order; the cells they land in are shuffled), and asks
one question from the registry below. Digits are named by colour, not by place: a small model from random
weights learns to find "the blue digit" by its colour far sooner than "the second digit in reading order".
Each question kind gives its answer and the steps that lead to it from the digits in colour order: what a good
rationale holds, and what the stand-in teacher writes. Pure: no images, no I/O.

    kind = QUESTION_KINDS["sum"]
    kind.answer([3, 7, 1, 8])   -> "19"
    kind.steps([3, 7, 1, 8])    -> ["3 + 7 = 10.", "10 + 1 = 11.", "11 + 8 = 19."]
    listed([3, 7, 1])           -> "red 3, blue 7 and green 1"
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INK_COLORS = ("red", "blue", "green", "orange")  # digit i of a question is drawn in INK_COLORS[i]


@dataclass(frozen=True)
class QuestionKind:
    """One kind of question: its text (with `{k}` for a threshold), answer type, answer and worked steps."""

    name: str
    answer_type: str
    template: str
    answer_fn: Callable[[list[int], int], str]
    steps_fn: Callable[[list[int], int], list[str]]
    min_digits: int = 2

    def question(self, k: int = 0) -> str:
        return self.template.format(k=k)

    def answer(self, digits: list[int], k: int = 0) -> str:
        return self.answer_fn(digits, k)

    def steps(self, digits: list[int], k: int = 0) -> list[str]:
        return self.steps_fn(digits, k)

    def pattern(self) -> re.Pattern[str]:
        """Recognises this kind's question in a prompt and captures `k`."""
        return re.compile(re.escape(self.template).replace(re.escape("{k}"), r"(\d+)"))


QUESTION_KINDS: dict[str, QuestionKind] = {}


def register(kind: QuestionKind) -> QuestionKind:
    QUESTION_KINDS[kind.name] = kind
    return kind


def _running_sum(digits: list[int]) -> list[str]:
    steps, total = [], digits[0]
    for d in digits[1:]:
        steps.append(f"{total} + {d} = {total + d}.")
        total += d
    return steps


def _extremes(digits: list[int]) -> list[str]:
    return [f"The largest digit is {max(digits)} and the smallest is {min(digits)}.",
            f"{max(digits)} - {min(digits)} = {max(digits) - min(digits)}."]


def _red_blue(digits: list[int]) -> list[str]:
    a, b = digits[0], digits[1]
    return [f"The red digit is {a} and the blue digit is {b}.", f"{a} x {b} = {a * b}."]


def _compare(digits: list[int], k: int) -> list[str]:
    steps = [f"{d} is {'greater' if d > k else 'not greater'} than {k}." for d in digits]
    n = sum(d > k for d in digits)
    return steps + [f"That makes {n} {'digit' if n == 1 else 'digits'} greater than {k}."]


def _parity(digits: list[int]) -> list[str]:
    total = sum(digits)
    return _running_sum(digits) + [f"{total} is {'even' if total % 2 == 0 else 'odd'}."]


# Answer types: sums and products reach 20-81, where the `number` type's 5% tolerance (ChartQA's relaxed
# accuracy) would accept a slip of one, so they are exact (`open`); ranges and counts stay below 10, where
# relaxed and exact agree.
register(QuestionKind("sum", "open", "What is the sum of all the digits in the image?",
                      lambda d, k: str(sum(d)), lambda d, k: _running_sum(d)))
register(QuestionKind("range", "number", "What is the largest digit minus the smallest digit?",
                      lambda d, k: str(max(d) - min(d)), lambda d, k: _extremes(d)))
register(QuestionKind("product", "open", "What is the product of the red digit and the blue digit?",
                      lambda d, k: str(d[0] * d[1]), lambda d, k: _red_blue(d)))
register(QuestionKind("count_greater", "number", "How many digits are greater than {k}?",
                      lambda d, k: str(sum(x > k for x in d)), _compare))
register(QuestionKind("sum_even", "yes_no", "Is the sum of all the digits even?",
                      lambda d, k: "yes" if sum(d) % 2 == 0 else "no", lambda d, k: _parity(d)))
register(QuestionKind("sum_choice", "multiple_choice", "Which option is the sum of all the digits?",
                      lambda d, k: str(sum(d)), lambda d, k: _running_sum(d)))


def sum_choices(digits: list[int], rng: random.Random, n: int = 4) -> list[str]:
    """`n` distinct options, one of them the sum; distractors are near misses (the kind a slip produces)."""
    total = sum(digits)
    near = [total + off for off in (-3, -2, -1, 1, 2, 3, 10, -10) if total + off >= 0]
    options = [total] + rng.sample(near, n - 1)
    rng.shuffle(options)
    return [str(o) for o in options]


def multi_step(kind: str, n_digits: int) -> bool:
    """Questions that combine three or more digits (the issue's 'multi-step' slice); product uses two."""
    return n_digits >= 3 and kind != "product"


# Varied phrasings of a rationale: read the digits, work the steps, conclude.
READ = (
    "The image shows {n} handwritten digits: {listed}.",
    "Reading each colour: {listed}.",
    "I can see {n} digits in the image: {listed}.",
    "The handwritten digits are {listed}.",
)
CONCLUDE = ("So the answer is {answer}.", "Therefore the answer is {answer}.", "Hence the answer is {answer}.")
PARITY = ("An even sum means yes, an odd sum means no.", "The question asks whether it is even.")


def listed(digits: list[int]) -> str:
    """'red 3, blue 7 and green 1': each digit after its ink colour."""
    words = [f"{INK_COLORS[i]} {d}" for i, d in enumerate(digits)]
    return ", ".join(words[:-1]) + f" and {words[-1]}"


def rationale(kind_name: str, digits: list[int], k: int, answer: str, rng: random.Random) -> str:
    """A rationale that reads the digits, works the steps and ends at `answer` (no `### Answer:` line)."""
    kind = QUESTION_KINDS[kind_name]
    parts = [rng.choice(READ).format(n=DIGIT_WORDS[len(digits)], listed=listed(digits))]
    parts += kind.steps(digits, k)
    if kind.name == "sum_even":
        parts.append(rng.choice(PARITY))
    if kind.answer_type == "multiple_choice":  # the step from the sum to the option that shows it
        parts.append(f"{kind.answer(digits, k)} is option {answer}.")
    parts.append(rng.choice(CONCLUDE).format(answer=answer))
    return " ".join(parts)


def parse_question(question: str) -> tuple[str, int] | None:
    """(kind name, k) of a question written by this module, else None."""
    for kind in QUESTION_KINDS.values():
        m = kind.pattern().search(question)
        if m:
            return kind.name, int(m.group(1)) if m.groups() else 0
    return None


def corpus_sentences() -> list[str]:
    """Text for training the tiny tokenizer: every question, phrasing and small arithmetic fact."""
    out = [kind.question(k) for kind in QUESTION_KINDS.values() for k in range(10)]
    for n in range(2, 5):
        digits = list(range(1, n + 1))
        out += [t.format(n=DIGIT_WORDS[n], listed=listed(digits)) for t in READ]
    out += [f"{a} + {b} = {a + b}." for a in range(37) for b in range(10)]
    out += [f"{a} x {b} = {a * b}." for a in range(10) for b in range(10)]
    out += [f"{a} - {b} = {a - b}." for a in range(10) for b in range(a + 1)]
    out += [f"{d} is greater than {k}. {d} is not greater than {k}." for d in range(10) for k in range(10)]
    out += [t.format(answer=a) for t in CONCLUDE for a in range(82)] + list(PARITY)
    return out
