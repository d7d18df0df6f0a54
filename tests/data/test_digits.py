"""The digits source: disjoint handwriting pools, determinism, valid rows, gold checked against the labels."""

import io
import random
from collections import Counter

from PIL import Image

from reasoner_ray.core import digit_tasks
from reasoner_ray.core.config import DataSource
from reasoner_ray.core.reward import score
from reasoner_ray.core.prompts import cot_response, gold_for_response
from reasoner_ray.data import digits
from reasoner_ray.data.readers import iter_rows
from reasoner_ray.teacher.index import AnnotationIndex
from reasoner_ray.teacher.server import write_completion


def test_pools_are_disjoint_and_cover_every_image():
    pools = {s: set(digits.pool(s)) for s in ("train", "validation", "test")}
    assert not pools["train"] & pools["test"] and not pools["train"] & pools["validation"]
    assert not pools["validation"] & pools["test"]
    assert sum(len(p) for p in pools.values()) == 1797
    assert len(pools["test"]) == 539


def test_questions_use_only_their_pool_and_are_deterministic():
    for split in ("train", "test"):
        pool = set(digits.pool(split))
        for i in range(50):
            rec = digits.make_record(split, i)
            assert set(rec["_annotation"]["images"]) <= pool
            again = digits.make_record(split, i)
            assert rec["image"] == again["image"] and rec["question"] == again["question"]
    assert digits.make_record("train", 0)["image"] != digits.make_record("test", 0)["image"]


def test_limit_is_a_prefix_and_rows_are_valid():
    src = DataSource(format="digits", split="validation", limit=30)
    rows = list(iter_rows(src))
    assert [r.id for r in rows] == [f"digits-validation-{i}" for i in range(30)]
    assert [r.id for r in iter_rows(src.model_copy(update={"limit": 10}))] == [r.id for r in rows[:10]]
    assert Image.open(io.BytesIO(rows[0].image.data)).size == (64, 64)
    types = Counter(r.answer_type for r in iter_rows(src.model_copy(update={"limit": 300})))
    assert set(types) == {"open", "number", "yes_no", "multiple_choice"}


def test_gold_matches_the_handwritten_labels():
    from sklearn.datasets import load_digits

    labels = load_digits().target
    for i in range(100):
        rec = digits.make_record("test", i)
        ann = rec["_annotation"]
        assert ann["digits"] == [int(labels[j]) for j in ann["images"]]
        kind = digit_tasks.QUESTION_KINDS[ann["kind"]]
        assert rec["answer"] == kind.answer(ann["digits"], ann["k"])
        assert ("multi_step" in rec["tags"]) == digit_tasks.multi_step(ann["kind"], len(ann["digits"]))


def test_a_hand_worked_record():
    # Found once and written down: question 4 of test asks for the sum of four digits.
    rec = digits.make_record("test", 4)
    assert rec["question"] == "What is the sum of all the digits in the image?"
    assert rec["_annotation"]["digits"] == [7, 5, 3, 5] and rec["answer"] == "20"  # 7 + 5 + 3 + 5


def test_unknown_split_is_named():
    import pytest

    with pytest.raises(ValueError, match="digits split 'dev'"):
        digits.pool("dev")


def test_teacher_rationales_end_in_the_gold_and_verify():
    index = AnnotationIndex.from_spec("digits:train:120")
    raws = [digits.make_record("train", i) for i in range(120)]
    for raw in raws:
        entry = index.lookup(raw["image"])
        row = next(r for r in entry.rows if r.id == raw["id"])
        text = write_completion(row, entry, None, random.Random(raw["id"]))
        gold = gold_for_response(row)
        assert text.endswith(f"### Answer: {gold}")
        assert digit_tasks.listed(raw["_annotation"]["digits"]) in text
        assert score(text, row.answer, row.answer_type, row.choices).correct
        wrong = write_completion(row, entry, "wrong", random.Random(raw["id"]))
        assert not score(wrong, row.answer, row.answer_type, row.choices).correct
    assert cot_response("x", "1").endswith("### Answer: 1")


def test_each_digit_is_drawn_in_its_ink_colour():
    import numpy as np

    for i in range(20):
        rec = digits.make_record("train", i)
        pixels = np.asarray(Image.open(io.BytesIO(rec["image"])).convert("RGB")).reshape(-1, 3).astype(int)
        n = len(rec["_annotation"]["digits"])
        for color in digit_tasks.INK_COLORS[:n]:
            target = np.array(digits.INK_RGB[color])
            assert (np.abs(pixels - target).sum(1) < 40).any(), (i, color)
        for color in digit_tasks.INK_COLORS[n:]:
            target = np.array(digits.INK_RGB[color])
            assert not (np.abs(pixels - target).sum(1) < 40).any(), (i, color)
