"""The `arithmetic` data source: multi-step arithmetic on four printed digits, a task where reasoning, not
reading, is what goes wrong.

Each image (64x64) holds four digits 1-9 in a clean 5x7 pixel font (scaled 3x), one per cell of a 2x2 grid, in
the ink colours red, blue, green and orange (reasoner_ray.core.arithmetic_tasks; the cells are shuffled, with a
small jitter). The question names the digits by colour and asks for a three-step computation over them.

Problems, not only images, are held out: a problem is (question kind, the four digits), and each one belongs to
exactly one split by a fixed hash, so no test or validation problem is ever trained on (the arithmetic facts
themselves are shared: they are the skill being learned). Question i of a split is the i-th problem of that
split's fixed shuffled list, drawn with its own seeded image, so `limit: N` is always the same N questions and
no problem repeats within a split. Rows carry tags `kind:<name>`; the digits travel in the raw record's
`_annotation` (read by the stand-in teacher and the step checker, dropped from the row), and `annotation(id)`
recomputes them from a row id.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import random
from collections.abc import Iterator
from typing import Any

from reasoner_ray.core import arithmetic_tasks as tasks
from reasoner_ray.core.config import DataSource
from reasoner_ray.core.digit_tasks import INK_COLORS

SPLIT_BUCKETS = {"test": range(0, 15), "validation": range(15, 25), "train": range(25, 100)}  # of 100 hash buckets
PROBLEM_SEED = "arithmetic-problems-v1"  # fixed: splits and question order never move with run.seed
CELL, SCALE, CANVAS, JITTER = 32, 3, 64, 2
INK_RGB = {"red": (220, 20, 20), "blue": (20, 40, 220), "green": (20, 150, 40), "orange": (240, 140, 0)}
FONT = {  # 5x7 glyphs, one string per row
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
}


def split_of(kind: str, digits: tuple[int, ...]) -> str:
    """The one split a problem belongs to."""
    bucket = int(hashlib.sha256(f"{PROBLEM_SEED}:{kind}:{digits}".encode()).hexdigest(), 16) % 100
    return next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


@functools.lru_cache(maxsize=4)
def problems(split: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Every (kind, digits) problem of `split`, in a fixed shuffled order (kinds interleaved)."""
    if split not in SPLIT_BUCKETS:
        raise ValueError(f"arithmetic split {split!r} is not one of {sorted(SPLIT_BUCKETS)}")
    found = [(kind, digits) for kind in tasks.QUESTION_KINDS
             for digits in itertools.product(tasks.DIGITS, repeat=4) if split_of(kind, digits) == split]
    random.Random(f"{PROBLEM_SEED}:{split}").shuffle(found)
    return tuple(found)


def compose(digits: list[int], rng: random.Random) -> bytes:
    """PNG bytes: digit i in ink colour INK_COLORS[i], in a shuffled cell of the 2x2 grid, jittered."""
    import numpy as np
    from PIL import Image

    canvas = np.full((CANVAS, CANVAS, 3), 255, dtype=np.uint8)
    cells = rng.sample(range(4), len(digits))
    for color, digit, cell in zip(INK_COLORS, digits, cells):
        glyph = np.array([[c == "1" for c in row] for row in FONT[str(digit)]])
        mask = np.kron(glyph, np.ones((SCALE, SCALE), dtype=bool))
        height, width = mask.shape
        top = (cell // 2) * CELL + (CELL - height) // 2 + rng.randint(-JITTER, JITTER)
        left = (cell % 2) * CELL + (CELL - width) // 2 + rng.randint(-JITTER, JITTER)
        canvas[top:top + height, left:left + width][mask] = INK_RGB[color]
    buf = io.BytesIO()
    Image.fromarray(canvas, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def _question(split: str, i: int) -> tuple[str, list[int], list[str] | None, random.Random]:
    """(kind, digits, options, the RNG that then draws the image) of question i of `split`."""
    kind_name, digits = problems(split)[i]
    kind = tasks.QUESTION_KINDS[kind_name]
    rng = random.Random(f"arithmetic:{split}:{i}")
    choices = tasks.options(kind.value(list(digits)), rng) if kind.answer_type == "multiple_choice" else None
    return kind_name, list(digits), choices, rng


def make_record(split: str, i: int) -> dict[str, Any]:
    """The raw record of question i of `split` (deterministic)."""
    kind_name, digits, choices, rng = _question(split, i)
    kind = tasks.QUESTION_KINDS[kind_name]
    return {
        "id": f"arithmetic-{split}-{i}",
        "image": compose(digits, rng),
        "question": kind.question,
        "answer": kind.answer(digits),
        "answer_type": kind.answer_type,
        "choices": choices,
        "source": "arithmetic",
        "tags": [f"kind:{kind_name}"],
        "_annotation": {"kind": kind_name, "digits": digits, "choices": choices},
    }


def annotation(row_id: str) -> dict[str, Any] | None:
    """The annotation of an `arithmetic-<split>-<i>` row, recomputed; None for any other id."""
    source, _, rest = row_id.partition("-")
    split, _, index = rest.rpartition("-")
    if source != "arithmetic" or split not in SPLIT_BUCKETS or not index.isdigit():
        return None
    kind_name, digits, choices, _ = _question(split, int(index))
    return {"kind": kind_name, "digits": digits, "choices": choices}


def read_arithmetic(source: DataSource) -> Iterator[dict[str, Any]]:
    for i in range(len(problems(source.split))):  # fails early, naming the split, if it is not one of ours
        yield make_record(source.split, i)


def check_reply(question_id: str, text: str, correct: bool) -> str | None:
    """Where a CoT reply to an arithmetic question first went wrong (arithmetic_tasks.check_chain); None for a
    question id of another source."""
    ann = annotation(question_id)
    if ann is None:
        return None
    return tasks.check_chain(text, ann["kind"], ann["digits"], correct, ann["choices"])
