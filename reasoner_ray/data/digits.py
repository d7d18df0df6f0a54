"""The `digits` data source: multi-step arithmetic questions on composites of real handwritten digits.

The digits are scikit-learn's bundled copy of the UCI handwritten digits (`sklearn.datasets.load_digits`:
1,797 8x8 images written by 43 people; the file ships inside the wheel, nothing is downloaded). The images are
split once, by a fixed permutation independent of the run's seed, into disjoint pools: `test` (30%),
`validation` (10%) and `train` (60%), so every test question shows handwriting the model never trained on and
settings can be chosen on `validation` without touching `test`.

Question i of a split is drawn from its own seeded RNG (so `limit: N` is always the same first N questions):
2-4 digits from the split's pool, drawn into shuffled cells of a 2x2 grid (upscaled 3x, digit i in ink colour
`digit_tasks.INK_COLORS[i]` on white, a small seeded jitter), and one question kind of reasoner_ray.core.digit_tasks (sum, largest minus smallest, product,
count above k, is the sum even, which option is the sum). Rows are ordinary VQARows; the digits themselves
travel in the raw record's `_annotation` (read by the stand-in teacher, dropped from the row).
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Iterator
from typing import Any

from reasoner_ray.core import digit_tasks
from reasoner_ray.core.config import DataSource

POOL_SEED = 20240613  # fixed: the pools must not move with run.seed
POOL_FRACTIONS = {"test": 0.30, "validation": 0.10, "train": 0.60}
SPLIT_SIZES = {"train": 50_000, "validation": 2_000, "test": 2_000}  # questions per split (use `limit` for fewer)
CELL, SCALE, CANVAS = 32, 3, 64  # 2x2 grid of 32 px cells on a 64 px image; digits drawn 24 px wide
JITTER = 2  # pixels a digit may move from its cell's centre, each way
# How often each question kind is asked (sum-based kinds carry most of the multi-step reasoning).
KIND_WEIGHTS = {"sum": 3, "range": 2, "product": 2, "count_greater": 2, "sum_even": 2, "sum_choice": 2}


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images, data.target


@functools.lru_cache(maxsize=4)
def pool(split: str) -> tuple[int, ...]:
    """Indices into load_digits() of the split's handwriting pool (disjoint across splits)."""
    if split not in POOL_FRACTIONS:
        raise ValueError(f"digits split {split!r} is not one of {sorted(POOL_FRACTIONS)}")
    images, _ = _digits()
    order = list(range(len(images)))
    random.Random(POOL_SEED).shuffle(order)
    start = 0
    for name, fraction in POOL_FRACTIONS.items():
        size = round(fraction * len(order))
        if name == split:
            return tuple(sorted(order[start:start + size]))
        start += size
    raise AssertionError("unreachable")


INK_RGB = {"red": (220, 20, 20), "blue": (20, 40, 220), "green": (20, 150, 40), "orange": (240, 140, 0)}


def compose(indices: list[int], rng: random.Random) -> bytes:
    """PNG bytes: digit i of `indices` in ink colour INK_COLORS[i], in a shuffled cell of a 2x2 grid, jittered."""
    import numpy as np
    from PIL import Image

    images, _ = _digits()
    canvas = np.full((CANVAS, CANVAS, 3), 255, dtype=np.float64)
    side = 8 * SCALE
    cells = rng.sample(range(4), len(indices))
    for color, idx, cell in zip(digit_tasks.INK_COLORS, indices, cells):
        ink = np.kron(images[idx], np.ones((SCALE, SCALE)))[..., None] / 16  # 0..1, nearest-neighbour upscale
        glyph = 255 - ink * (255 - np.array(INK_RGB[color], dtype=np.float64))
        margin = (CELL - side) // 2
        top = (cell // 2) * CELL + margin + rng.randint(-JITTER, JITTER)
        left = (cell % 2) * CELL + margin + rng.randint(-JITTER, JITTER)
        canvas[top:top + side, left:left + side] = glyph
    buf = io.BytesIO()
    Image.fromarray(canvas.round().astype(np.uint8), mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def make_record(split: str, i: int) -> dict[str, Any]:
    """The raw record of question i of `split` (deterministic)."""
    _, labels = _digits()
    rng = random.Random(f"digits:{split}:{i}")
    kinds = list(KIND_WEIGHTS)
    kind = digit_tasks.QUESTION_KINDS[rng.choices(kinds, weights=[KIND_WEIGHTS[k] for k in kinds])[0]]
    n = rng.randint(2, 4)
    indices = rng.sample(pool(split), n)
    digits = [int(labels[j]) for j in indices]
    k = rng.randint(1, 8) if "{k}" in kind.template else 0
    answer = kind.answer(digits, k)
    choices = digit_tasks.sum_choices(digits, rng) if kind.answer_type == "multiple_choice" else None
    return {
        "id": f"digits-{split}-{i}",
        "image": compose(indices, rng),
        "question": kind.question(k),
        "answer": answer,
        "answer_type": kind.answer_type,
        "choices": choices,
        "source": "digits",
        "tags": [f"kind:{kind.name}", f"digits:{n}"] + (["multi_step"] if digit_tasks.multi_step(kind.name, n) else []),
        "_annotation": {"digits": digits, "kind": kind.name, "k": k, "images": indices},
    }


def read_digits(source: DataSource) -> Iterator[dict[str, Any]]:
    pool(source.split)  # fails early, naming the split, if it is not one of the digits splits
    for i in range(SPLIT_SIZES[source.split]):
        yield make_record(source.split, i)
