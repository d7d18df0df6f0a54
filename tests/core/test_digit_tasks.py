"""The digits question kinds: hand-worked answers and steps, and rationales the reward module verifies."""

import random

import pytest

from reasoner_ray.core import digit_tasks
from reasoner_ray.core.prompts import cot_response
from reasoner_ray.core.reward import score
from reasoner_ray.core.rows import ANSWER_TYPES

KINDS = digit_tasks.QUESTION_KINDS


def test_hand_worked_answers_and_steps():
    d = [3, 7, 1, 8]
    assert KINDS["sum"].answer(d) == "19"
    assert KINDS["sum"].steps(d) == ["3 + 7 = 10.", "10 + 1 = 11.", "11 + 8 = 19."]
    assert KINDS["range"].answer(d) == "7"
    assert KINDS["range"].steps(d)[-1] == "8 - 1 = 7."
    assert KINDS["product"].answer(d) == "21"  # red 3, blue 7
    assert KINDS["product"].steps(d) == ["The red digit is 3 and the blue digit is 7.", "3 x 7 = 21."]
    assert digit_tasks.listed(d) == "red 3, blue 7, green 1 and orange 8"
    assert KINDS["count_greater"].answer(d, 5) == "2"  # 7 and 8
    assert KINDS["count_greater"].steps(d, 5)[-1] == "That makes 2 digits greater than 5."
    assert KINDS["sum_even"].answer(d) == "no"  # 19 is odd
    assert KINDS["sum_even"].answer([2, 4]) == "yes"
    assert KINDS["sum_even"].steps([2, 4]) == ["2 + 4 = 6.", "6 is even."]


def test_sum_choices_hold_the_sum_once_and_are_distinct():
    for seed in range(200):
        rng = random.Random(seed)
        digits = [rng.randint(0, 9) for _ in range(rng.randint(2, 4))]
        options = digit_tasks.sum_choices(digits, rng)
        assert len(options) == len(set(options)) == 4
        assert options.count(str(sum(digits))) == 1
        assert all(int(o) >= 0 for o in options)


def test_questions_parse_back_to_their_kind():
    for kind in KINDS.values():
        for k in (1, 7):
            parsed = digit_tasks.parse_question("Options:\n" + kind.question(k) + "\nGenerate a reason first")
            assert parsed == (kind.name, k if "{k}" in kind.template else 0)
    assert digit_tasks.parse_question("What color is the shape?") is None


def test_multi_step_slice():
    assert digit_tasks.multi_step("sum", 3) and digit_tasks.multi_step("count_greater", 4)
    assert not digit_tasks.multi_step("sum", 2) and not digit_tasks.multi_step("product", 4)


@pytest.mark.parametrize("kind", list(KINDS))
def test_rationale_ends_in_gold_and_verifies(kind):
    rng = random.Random(kind)
    digits = [rng.randint(0, 9) for _ in range(3)]
    spec = KINDS[kind]
    assert spec.answer_type in ANSWER_TYPES
    gold = spec.answer(digits, 4)
    choices = digit_tasks.sum_choices(digits, rng) if spec.answer_type == "multiple_choice" else None
    written = chr(ord("A") + choices.index(gold)) if choices else gold
    text = digit_tasks.rationale(kind, digits, 4, written, rng)
    assert text.endswith(f"the answer is {written}.")
    assert digit_tasks.listed(digits) in text
    result = score(cot_response(text, written), gold, spec.answer_type, choices)
    assert result.correct and result.value == 1.0
    # the same chain concluding a slip is scored wrong
    wrong = str(int(gold) + 1) if gold.isdigit() else ("no" if gold == "yes" else "yes")
    if choices:
        wrong = "A" if written != "A" else "B"
    assert not score(cot_response(text, wrong), gold, spec.answer_type, choices).correct
