"""The arithmetic question kinds worked by hand, and the step checker on hand-made right and wrong chains."""

import random

import pytest

from reasoner_ray.core import arithmetic_tasks as tasks
from reasoner_ray.core import diagnosis as diag
from reasoner_ray.core.reward import score
from reasoner_ray.core.rows import ANSWER_TYPES

KINDS = tasks.QUESTION_KINDS
D = [3, 7, 5, 2]  # red 3, blue 7, green 5, orange 2


def test_hand_worked_answers_and_steps():
    assert KINDS["mul_add_add"].step_texts(D) == ["3 x 7 = 21.", "21 + 5 = 26.", "26 + 2 = 28."]
    assert KINDS["mul_add_add"].answer(D) == "28"
    assert KINDS["add_mul_add"].step_texts(D) == ["3 + 7 = 10.", "10 x 5 = 50.", "50 + 2 = 52."]
    assert KINDS["two_products"].step_texts(D) == ["3 x 7 = 21.", "5 x 2 = 10.", "21 + 10 = 31."]
    assert KINDS["two_products"].answer(D) == "31"
    assert KINDS["add_sub_sub"].step_texts([1, 2, 9, 8]) == ["1 + 2 = 3.", "3 - 9 = -6.", "-6 - 8 = -14."]
    assert KINDS["add_sub_sub"].answer([1, 2, 9, 8]) == "-14"
    assert KINDS["compare_products"].step_texts(D) == ["3 x 7 = 21.", "5 x 2 = 10.", "21 is greater than 10."]
    assert KINDS["compare_products"].answer(D) == "yes"
    assert KINDS["compare_products"].answer([2, 3, 1, 6]) == "no"  # 6 is not greater than 6
    assert KINDS["choice"].step_texts(D) == ["3 x 7 = 21.", "21 - 5 = 16.", "16 - 2 = 14."]
    assert KINDS["choice"].value(D) == 14


def test_every_kind_has_a_scored_answer_type_and_open_answers_are_never_negative():
    assert {k.answer_type for k in KINDS.values()} == {"open", "number", "yes_no", "multiple_choice"}
    assert all(k.answer_type in ANSWER_TYPES for k in KINDS.values())
    # VQA normalization (the `open` type) strips a minus sign, so open kinds must stay >= 0 on every input
    for kind in (k for k in KINDS.values() if k.answer_type == "open"):
        assert min(kind.value([a, b, c, d]) for a in (1, 9) for b in (1, 9) for c in (1, 9) for d in (1, 9)) >= 0
    # `number` is exact below 20 (ChartQA's 5% tolerance is under one there): add_sub_sub stays within +-16
    assert max(abs(KINDS["add_sub_sub"].value([a, b, c, d])) for a in (1, 9) for b in (1, 9) for c in (1, 9)
               for d in (1, 9)) == 16


def test_options_hold_the_value_once():
    for seed in range(100):
        opts = tasks.options(14, random.Random(seed))
        assert len(set(opts)) == 4 and opts.count("14") == 1


def test_rationale_reads_works_and_concludes():
    text = tasks.rationale("two_products", D, "31", random.Random(0))
    assert "red 3, blue 7, green 5 and orange 2" in text
    assert "3 x 7 = 21. 5 x 2 = 10. 21 + 10 = 31." in text and text.rstrip(".").endswith("31")
    choices = ["16", "14", "12", "24"]
    mc = tasks.rationale("choice", D, "B", random.Random(0), choices)
    assert "14 is option B." in mc
    assert score(mc + "\n### Answer: B", "14", "multiple_choice", choices).correct


CHAIN = "The digits are red 3, blue 7, green 5 and orange 2. {steps} So the answer is {answer}.\n### Answer: {answer}"


def check(steps: str, answer: str, kind: str = "two_products", digits=D, correct=False, choices=None) -> str:
    return tasks.check_chain(CHAIN.format(steps=steps, answer=answer), kind, digits, correct, choices)


def test_checker_on_hand_made_chains():
    assert check("3 x 7 = 21. 5 x 2 = 10. 21 + 10 = 31.", "31", correct=True) == diag.CORRECT
    assert check("3 x 7 = 21. 5 x 2 = 10. 21 + 10 = 32.", "32") == diag.ARITHMETIC_SLIP
    assert check("3 x 7 = 24. 5 x 2 = 10. 24 + 10 = 34.", "34") == diag.ARITHMETIC_SLIP  # the first slip counts
    assert check("3 x 5 = 15. 5 x 2 = 10. 15 + 10 = 25.", "25") == diag.WRONG_OPERANDS  # green for blue: binding
    assert check("3 x 7 = 21. 5 x 2 = 10. 21 + 10 = 31.", "30") == diag.WRONG_CONCLUSION
    assert check("3 x 7 = 21.", "21") == diag.INCOMPLETE
    assert tasks.check_chain("31", "two_products", D, False) == diag.NO_STEPS
    misread = "The digits are red 8, blue 7, green 5 and orange 2. 8 x 7 = 56. 5 x 2 = 10. 56 + 10 = 66.\n### Answer: 66"
    assert tasks.check_chain(misread, "two_products", D, False) == diag.MISREAD
    unread = "The digits are red 3, blue 7 and green 5. 3 x 7 = 21.\n### Answer: 21"
    assert tasks.check_chain(unread, "two_products", D, False) == diag.MISREAD  # orange never read
    # comparisons and options are steps too
    assert check("3 x 7 = 21. 5 x 2 = 10. 21 is not greater than 10.", "no", "compare_products") == \
        diag.WRONG_CONCLUSION
    choices = ["16", "14", "12", "24"]
    assert check("3 x 7 = 21. 21 - 5 = 16. 16 - 2 = 14. 14 is option A.", "A", "choice", choices=choices) == \
        diag.WRONG_CONCLUSION
    assert check("3 x 7 = 21. 21 - 5 = 16. 16 - 2 = 14. 14 is option B.", "B", "choice", correct=True,
                 choices=choices) == diag.CORRECT
    # a right answer reached through a wrong reading or step is lucky; one that leaves steps unwritten is not
    assert check("3 x 7 = 21. 5 x 2 = 10. 21 is greater than 10.", "yes", "compare_products", correct=True) == \
        diag.CORRECT
    assert check("3 x 7 = 24. 5 x 2 = 10. 24 is greater than 10.", "yes", "compare_products", correct=True) == \
        diag.LUCKY
    assert check("3 x 7 = 21. 21 - 5 = 16. 16 - 2 = 12. 12 is option B.", "B", "choice", correct=True,
                 choices=choices) == diag.LUCKY  # 16 - 2 = 12 is false, and 12 is not option B either
    lucky_read = "The digits are red 9, blue 7, green 5 and orange 2. 9 x 7 = 63. 5 x 2 = 10. 63 is greater than 10."
    assert tasks.check_chain(lucky_read, "compare_products", D, True) == diag.LUCKY
    assert check("3 x 7 = 21.", "31", correct=True) == diag.CORRECT
    # negative intermediate results parse
    negative = "The digits are red 1, blue 2, green 9 and orange 8. 1 + 2 = 3. 3 - 9 = -6. -6 - 8 = -13.\n### Answer: -13"
    assert tasks.check_chain(negative, "add_sub_sub", [1, 2, 9, 8], False) == diag.ARITHMETIC_SLIP


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_teachers_chain_checks_as_correct_steps(kind):
    choices = tasks.options(KINDS[kind].value(D), random.Random(1)) if kind == "choice" else None
    answer = KINDS[kind].answer(D)
    if choices:
        answer = chr(ord("A") + choices.index(answer))
    text = tasks.rationale(kind, D, answer, random.Random(2), choices) + f"\n### Answer: {answer}"
    reading, steps = tasks.parse_steps(text)
    assert reading == dict(zip(("red", "blue", "green", "orange"), D))
    assert [s.text() for s in steps[:3]] == KINDS[kind].step_texts(D)
    # scored wrong on purpose: the checker then finds no wrong step and blames the conclusion
    assert tasks.check_chain(text, kind, D, False, choices) == diag.WRONG_CONCLUSION
