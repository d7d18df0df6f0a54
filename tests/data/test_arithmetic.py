"""The arithmetic source: disjoint problems per split, determinism, valid rows, gold and teacher checked, and the
step check through the reward stage."""

import io
import random

import numpy as np
import pytest
from PIL import Image

from reasoner_ray.core import arithmetic_tasks as tasks
from reasoner_ray.core import diagnosis as diag
from reasoner_ray.core.config import DataSource
from reasoner_ray.core.prompts import gold_for_response
from reasoner_ray.core.reward import score
from reasoner_ray.data import arithmetic
from reasoner_ray.data.readers import iter_rows
from reasoner_ray.teacher.index import AnnotationIndex
from reasoner_ray.teacher.server import write_completion


def test_splits_hold_disjoint_problems_and_cover_them_all():
    problems = {s: set(arithmetic.problems(s)) for s in ("train", "validation", "test")}
    assert not problems["train"] & problems["test"] and not problems["train"] & problems["validation"]
    assert not problems["validation"] & problems["test"]
    assert sum(len(p) for p in problems.values()) == len(tasks.QUESTION_KINDS) * 9 ** 4
    assert 0.13 < len(problems["test"]) / 9 ** 4 / len(tasks.QUESTION_KINDS) < 0.17  # 15% of the buckets
    # no problem repeats within a split, so 1,000 test questions are 1,000 problems
    assert len(arithmetic.problems("test")) == len(problems["test"])


def test_questions_are_deterministic_and_a_prefix():
    rec = arithmetic.make_record("test", 7)
    again = arithmetic.make_record("test", 7)
    assert rec["image"] == again["image"] and rec["question"] == again["question"]
    src = DataSource(format="arithmetic", split="validation", limit=20)
    rows = list(iter_rows(src))
    assert [r.id for r in rows] == [f"arithmetic-validation-{i}" for i in range(20)]
    assert [r.id for r in iter_rows(src.model_copy(update={"limit": 5}))] == [r.id for r in rows[:5]]
    types = {r.answer_type for r in iter_rows(src.model_copy(update={"limit": 200}))}
    assert types == {"open", "number", "yes_no", "multiple_choice"}
    with pytest.raises(ValueError, match="arithmetic split 'dev'"):
        arithmetic.problems("dev")


def test_a_hand_worked_record():
    # Found once and written down: question 0 of test is red 9 x blue 9 + green 2 x orange 2.
    rec = arithmetic.make_record("test", 0)
    assert rec["question"] == "What is red x blue + green x orange?"
    assert rec["_annotation"]["digits"] == [9, 9, 2, 2] and rec["answer"] == "85"  # 81 + 4
    assert arithmetic.annotation("arithmetic-test-0") == rec["_annotation"]
    assert arithmetic.annotation("digits-test-0") is None and arithmetic.annotation("arithmetic-dev-1") is None
    mc = arithmetic.make_record("test", 5)
    assert mc["_annotation"]["choices"] == mc["choices"] and mc["answer"] in mc["choices"]


def test_gold_is_the_kinds_answer_and_the_numbers_live_in_the_image():
    for i in range(60):
        rec = arithmetic.make_record("train", i)
        ann = rec["_annotation"]
        assert rec["answer"] == tasks.QUESTION_KINDS[ann["kind"]].answer(ann["digits"])
        assert not any(ch.isdigit() for ch in rec["question"])  # colours name the digits; no number in the text
        pixels = np.asarray(Image.open(io.BytesIO(rec["image"])).convert("RGB")).reshape(-1, 3).astype(int)
        for color in ("red", "blue", "green", "orange"):
            assert (np.abs(pixels - np.array(arithmetic.INK_RGB[color])).sum(1) < 10).sum() >= 15 * 3  # a glyph


def test_each_cell_shows_its_digits_glyph():
    rec = arithmetic.make_record("train", 3)
    image = np.asarray(Image.open(io.BytesIO(rec["image"])).convert("RGB")).astype(int)
    for color, digit in zip(("red", "blue", "green", "orange"), rec["_annotation"]["digits"]):
        mask = (np.abs(image - np.array(arithmetic.INK_RGB[color])).sum(-1) < 10)
        rows, cols = np.nonzero(mask)
        crop = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        glyph = np.array([[c == "1" for c in row] for row in arithmetic.FONT[str(digit)]])
        assert crop.shape == (7 * arithmetic.SCALE, glyph[:, glyph.any(0)].shape[1] * arithmetic.SCALE)
        assert (crop[::arithmetic.SCALE, ::arithmetic.SCALE] == glyph[:, glyph.any(0)]).all()


def test_teacher_rationales_end_in_the_gold_and_verify():
    index = AnnotationIndex.from_spec("arithmetic:train:60")
    for i in range(60):
        raw = arithmetic.make_record("train", i)
        entry = index.lookup(raw["image"])
        row = next(r for r in entry.rows if r.id == raw["id"])
        text = write_completion(row, entry, None, random.Random(raw["id"]))
        assert text.endswith(f"### Answer: {gold_for_response(row)}")
        assert score(text, row.answer, row.answer_type, row.choices).correct
        assert arithmetic.check_reply(row.id, text, True) == diag.CORRECT
        wrong = write_completion(row, entry, "wrong", random.Random(raw["id"]))
        assert not score(wrong, row.answer, row.answer_type, row.choices).correct


def test_scoring_writes_the_step_check():
    from reasoner_ray.operators.scoring import score_batch

    rec = arithmetic.make_record("test", 0)  # 9 x 9 + 2 x 2 = 85
    slip = "The digits are red 9, blue 9, green 2 and orange 2. 9 x 9 = 81. 2 x 2 = 4. 81 + 4 = 86.\n### Answer: 86"
    right = slip.replace("86", "85")
    batch = {"question_id": np.array([rec["id"]] * 3 + ["easy_vqa-test-0"], dtype=object),
             "text": np.array([slip, right, "85", right], dtype=object),
             "answer": np.array(["85", "85", "85", "85"], dtype=object),
             "answer_type": np.array(["open"] * 4, dtype=object),
             "style": np.array(["cot", "cot", "direct", "cot"], dtype=object)}
    out = score_batch(batch)
    assert list(out["correct"]) == [False, True, True, True]
    assert list(out["step_check"]) == [diag.ARITHMETIC_SLIP, diag.CORRECT, "", ""]  # direct / no checker: ""
