"""Worked examples for the reward: extraction, every answer type, the registry, the batch stage."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from reasoner_ray.core.reward import REGISTRY, GoldAnswerError, Score, extract_final_answer, score
from reasoner_ray.core.reward.math_answer import MathVerifier
from reasoner_ray.core.rows import ANSWER_TYPES
from reasoner_ray.core.reward import score as public_score
from reasoner_ray.operators.scoring import score_batch


def chain(answer: str) -> str:
    return f"The image shows a chart with several bars.\nSo the value follows.\n### Answer: {answer}"


def test_public_import_and_registry_matches_row_schema():
    assert public_score is score
    assert set(REGISTRY) == set(ANSWER_TYPES)


# --- extraction -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("reasoning\n### Answer: B", "B"),
        ("### Answer: wrong\nmore thinking\n### Answer: right", "right"),  # the last marker wins
        ("reasoning\n### Answer:\n\n  circle  \n", "circle"),  # answer on the next non-blank line
        ("reasoning\n### Answer: **12**", "12"),
        ("reasoning\n### Answer: $\\frac{1}{2}$", "\\frac{1}{2}"),
        ("reasoning\n### Answer: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("reasoning\nAnswer: yes", "yes"),  # fallback 1: an Answer: line
        ("reasoning\n**Final Answer:** 42", "42"),
        ("answer: first\nthen\nFinal answer: second", "second"),
        ("so the result is \\boxed{x^{2}+1}.", "x^{2}+1"),  # fallback 2: the last \boxed{}
        ("no final answer here", None),
        ("reasoning\n### Answer:   ", None),
        ("unclosed \\boxed{12", None),
    ],
)
def test_extract_final_answer(response, expected):
    assert extract_final_answer(response) == expected


def test_unparsed_response_scores_zero_with_reason():
    assert score("I think it is a circle.", "circle", "open") == Score(0.0, False, None, "unparsed")


# --- gold errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "answer_type", "choices"),
    [
        ("", "open", None),
        ("   ", "anls", None),
        ([], "open", None),
        (["cat", ""], "open", None),
        (None, "number", None),
        ([["nested"]], "open", None),
        (12, "number", None),
        ("maybe", "yes_no", None),
        ("E", "multiple_choice", ["a", "b", "c"]),  # a letter past the options
        ("fish", "multiple_choice", ["cat", "dog"]),  # neither a letter nor an option
        ("\\frac{1}{", "math", None),
    ],
)
def test_unreadable_gold_raises_data_error_even_for_unparsed_responses(gold, answer_type, choices):
    for response in (chain("anything"), "no answer"):
        with pytest.raises(GoldAnswerError):
            score(response, gold, answer_type, choices)
    assert issubclass(GoldAnswerError, ValueError)


def test_unknown_answer_type():
    with pytest.raises(ValueError, match="unknown answer type"):
        score(chain("x"), "x", "essay")


# --- multiple choice --------------------------------------------------------------------------------------

CHOICES = ["cat", "bird", "dog", "fish"]


@pytest.mark.parametrize(
    "answer", ["C", "(C)", "C.", "C)", "(C) dog", "C) dog", "C. dog", "C: dog", "c", "dog", "Dog.", "Option C",
               "The answer is (C).", "C (dog)", "[C]"],
)  # fmt: skip
def test_multiple_choice_names_gold_option(answer):
    result = score(chain(answer), "C", "multiple_choice", CHOICES)
    assert result.correct and result.value == 1.0
    assert score(chain(answer), "dog", "multiple_choice", CHOICES).correct  # gold as option text


@pytest.mark.parametrize("answer", ["B", "(A) cat", "bird", "b."])
def test_multiple_choice_other_option_is_wrong(answer):
    assert score(chain(answer), "C", "multiple_choice", CHOICES) == Score(0.0, False, answer)


@pytest.mark.parametrize("answer", ["A cat", "E", "a dog or a cat"])  # an article is not a letter; 4 options only
def test_multiple_choice_answer_naming_no_option(answer):
    assert score(chain(answer), "A", "multiple_choice", CHOICES) == Score(0.0, False, answer, "not_an_option")


def test_multiple_choice_option_that_is_a_letter():
    choices = ["B", "A"]  # a question whose options are letters: the gold text "A" is option B
    assert score(chain("B"), "A", "multiple_choice", choices).correct
    assert not score(chain("A"), "A", "multiple_choice", choices).correct


def test_multiple_choice_without_choices_compares_letters():
    assert score(chain("(b)"), "B", "multiple_choice").correct
    assert not score(chain("C"), "B", "multiple_choice").correct


# --- yes / no ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "correct"), [("yes", True), ("Yes.", True), ("YES, it is round.", True),
                                                 ("no", False), ("No, it is not.", False)])  # fmt: skip
def test_yes_no(answer, correct):
    assert score(chain(answer), "Yes", "yes_no").correct is correct


def test_yes_no_neither():
    assert score(chain("maybe"), "yes", "yes_no") == Score(0.0, False, "maybe", "not_yes_no")


def test_yes_no_with_ten_human_answers_is_vqa_accuracy():
    humans = ["yes"] * 2 + ["no"] * 8
    assert score(chain("yes"), humans, "yes_no").value == pytest.approx(0.6)
    assert score(chain("no"), humans, "yes_no").value == 1.0


# --- number (relaxed accuracy) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "gold", "correct"),
    [
        ("1,234", "1234", True),
        ("1234", "1,234", True),
        ("12%", "12", True),
        ("12", "12%", True),
        ("104.9", "100", True),  # 4.9% off
        ("95.1", "100", True),
        ("105.1", "100", False),  # 5.1% off
        ("94.9", "100", False),
        ("1.05", "1", True),  # exactly 5%: inside (Decimal arithmetic, no float drift)
        ("0", "0", True),
        ("0.01", "0", False),  # gold 0 needs exactly 0
        ("-10.4", "-10", True),
        ("−10", "-10", True),  # unicode minus
        ("$1,234.5 million", "1234.5", True),
        ("23 kg", "23", True),
        ("twelve", "12", False),
        ("Yes", "yes", True),  # non-numeric gold: normalized text
        ("2019-2020", "2019-2020", True),
        ("2019", "2019-2020", False),
    ],
)
def test_number_relaxed_accuracy(answer, gold, correct):
    result = score(chain(answer), gold, "number")
    assert result.correct is correct and result.value == float(correct)


def test_number_relative_error_boundary_worked_out():
    gold = 1000.0
    assert score(chain(str(gold * 1.049)), "1000", "number").correct
    assert not score(chain(str(gold * 1.051)), "1000", "number").correct


# --- open (VQA accuracy) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("two", "2"), ("Circle.", "circle"), ("a circle", "circle"), ("The Red", "red"), ("dont", "don't"),
     ("black/white", "black white"), ("3.5", "3.5"), ("  Blue\n", "blue")],
)  # fmt: skip
def test_open_vqa_normalization(answer, gold):
    assert score(chain(answer), gold, "open") == Score(1.0, True, answer.strip())


def test_open_single_answer_is_exact_after_normalization():
    assert score(chain("square"), "circle", "open") == Score(0.0, False, "square")


def test_open_vqa_accuracy_with_ten_human_answers_worked_by_hand():
    humans = ["red"] * 3 + ["dark red"] * 2 + ["maroon"] + ["crimson"] * 4
    # "red" matches 3 humans. Leaving out one of those 3 leaves 2 matches: min(1, 2/3) = 2/3 (3 subsets);
    # leaving out any of the other 7 leaves 3 matches: 1 (7 subsets). Mean: (3 * 2/3 + 7) / 10 = 0.9.
    assert score(chain("Red"), humans, "open") == Score(pytest.approx(0.9), True, "Red")
    # "dark red" matches 2: (2 * 1/3 + 8 * 2/3) / 10 = 0.6, fewer than 3 humans agree: not correct.
    assert score(chain("dark red"), humans, "open") == Score(pytest.approx(0.6), False, "dark red")
    # "maroon" matches 1: (1 * 0 + 9 * 1/3) / 10 = 0.3.
    assert score(chain("maroon"), humans, "open").value == pytest.approx(0.3)
    # "crimson" matches 4: (4 * 1 + 6 * 1) / 10 = 1.
    assert score(chain("the crimson"), humans, "open") == Score(1.0, True, "the crimson")
    assert score(chain("blue"), humans, "open") == Score(0.0, False, "blue")


def test_open_few_answers_any_match():
    assert score(chain("kitten"), ["cat", "kitten"], "open").correct


# --- anls -------------------------------------------------------------------------------------------------


def test_anls_worked_examples():
    assert score(chain("Invoice"), "invoice", "anls") == Score(1.0, True, "Invoice")
    # One wrong letter in 10: normalized Levenshtein distance 0.1, ANLS 0.9; partial credit, not correct.
    result = score(chain("1O-04-2019"), "10-04-2019", "anls")
    assert result.value == pytest.approx(0.9) and not result.correct
    assert score(chain("abcd"), "abxy", "anls").value == 0.0  # distance 0.5: at the threshold, 0
    assert score(chain("abcd"), "abcx", "anls").value == pytest.approx(0.75)
    assert score(chain("acme inc"), ["ACME Inc.", "acme inc"], "anls").correct  # best over golds


# --- math -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "gold", "correct"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("1/2", "0.5", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("0.333333", "1/3", True),
        ("0.3333", "1/3", False),
        ("12", "12.0", True),
        ("-3", "-3", True),
        ("4", "5", False),
        ("2\\sqrt{3}", "\\sqrt{12}", True),
        ("\\frac{\\pi}{2}", "\\pi/2", True),
        ("x + 1", "1 + x", True),
        ("45^\\circ", "45", True),
        ("\\sqrt{2}", "\\pi", False),
    ],
)
def test_math_equivalence(answer, gold, correct):
    result = score(chain(answer), gold, "math")
    assert result.correct is correct and result.value == float(correct) and result.reason is None


def test_math_runaway_input_is_bounded_in_a_worker_thread():
    verifier = MathVerifier(timeout_s=2.0)
    try:
        results = {}

        def check():
            results["tower"] = verifier.equivalent("5", "10^{10^{10}}")  # sympy does not return from this
            results["after"] = verifier.equivalent("\\frac{1}{2}", "0.5")  # the replacement child answers

        worker = threading.Thread(target=check)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert results == {"tower": None, "after": True}
    finally:
        verifier.close()


def test_math_from_several_threads():
    from concurrent.futures import ThreadPoolExecutor

    cases = [(f"{n}\\sqrt{{2}}", f"\\sqrt{{{2 * n * n}}}") for n in range(2, 26)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda case: score(chain(case[0]), case[1], "math"), cases))
    assert all(r.correct for r in results)


def test_math_in_a_forked_process_uses_its_own_worker():
    import multiprocessing

    assert score(chain("2\\sqrt{2}"), "\\sqrt{8}", "math").correct  # the parent's worker is running
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        assert pool.apply(_forked_math_check) == (False, True)
    assert score(chain("3\\sqrt{2}"), "\\sqrt{18}", "math").correct  # and still works in the parent


def _forked_math_check() -> tuple[bool, bool]:
    from reasoner_ray.core.reward.math_answer import VERIFIER

    inherited_child = VERIFIER._child is not None  # the parent's pipes must not be shared
    return inherited_child, score(chain("4\\sqrt{2}"), "\\sqrt{32}", "math").correct


def test_math_timeout_scores_zero_with_reason(monkeypatch):
    from reasoner_ray.core.reward import math_answer

    monkeypatch.setattr(math_answer.VERIFIER, "equivalent", lambda gold, answer: None)  # as after an overrun
    math_answer._verified.cache_clear()
    try:
        assert score(chain("x^{2}"), "\\pi", "math") == Score(0.0, False, "x^{2}", "timeout")
    finally:
        math_answer._verified.cache_clear()


# --- batch stage ------------------------------------------------------------------------------------------


def _batch():
    return {
        "question_id": np.array(["q1", "q2", "q3", "q4"]),
        "text": np.array([chain("B"), chain("12%"), "no answer", chain("cat")]),
        "answer": np.array(["bird", np.array(["12", "12.0"]), "circle", ""], dtype=object),
        "answer_type": np.array(["multiple_choice", "number", "open", "open"]),
        "choices": np.array([np.array(["cat", "bird"]), None, None, None], dtype=object),
    }


def test_score_batch_numpy_keeps_columns_and_adds_reward_parts():
    out = score_batch(_batch())
    assert list(out["question_id"]) == ["q1", "q2", "q3", "q4"]
    assert list(out["parsed"]) == ["B", "12%", None, "cat"]
    assert list(out["value"]) == [1.0, 1.0, 0.0, 0.0]
    assert list(out["correct"]) == [True, True, False, False]
    assert list(out["reason"]) == [None, None, "unparsed", "gold_error"]  # an empty gold is never rewarded


def test_score_batch_pandas():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({k: list(v) for k, v in _batch().items()})
    out = score_batch(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out["correct"]) == [True, True, False, False]
    assert list(out["question_id"]) == ["q1", "q2", "q3", "q4"]


def test_score_batch_without_choices_column():
    batch = {k: v for k, v in _batch().items() if k != "choices"}
    batch["answer"][0], batch["text"][0] = "B", chain("B")
    assert list(score_batch(batch)["correct"]) == [True, True, False, False]


def test_direct_replies_are_scored_whole():
    from reasoner_ray.core.reward import score as score_fn

    assert score_fn("yes", "yes", "yes_no", direct=True).correct
    assert score_fn("Red.", "red", "open", direct=True).correct
    assert score_fn("yes", "yes", "yes_no").reason == "unparsed"  # a CoT reply needs its final-answer line
    assert not score_fn("", "yes", "yes_no", direct=True).correct
    assert score_fn("It is red.\n### Answer: blue", "blue", "open", direct=True).correct  # the marker still wins


def test_scoring_scores_direct_style_whole():
    import numpy as np

    from reasoner_ray.operators.scoring import score_batch

    batch = {"text": np.array(["no", "no"], dtype=object), "answer": np.array(["no", "no"], dtype=object),
             "answer_type": np.array(["yes_no", "yes_no"], dtype=object), "style": np.array(["direct", "cot"], dtype=object)}
    out = score_batch(batch)
    assert list(out["correct"]) == [True, False] and list(out["reason"]) == [None, "unparsed"]


@pytest.mark.parametrize("reply, gold, right", [
    # ChartQA's relaxed_correctness (pix2struct / lmms-eval), worked by hand
    ("42.5", "42.5", True), ("44", "42.5", True),  # |44 - 42.5| / 42.5 = 3.5%
    ("45", "42.5", False),  # 5.9%
    ("18%", "0.18", True), ("18", "18%", False),  # a % divides by 100 on either side
    ("0", "0", True), ("0.0", "0", False),  # a gold of 0 is compared as text
    ("republicans", "Republicans", True), ("Democrats", "Republicans", False),
])
def test_relaxed_is_chartqas_own_rule(reply, gold, right):
    result = score(f"reasoning\n### Answer: {reply}", gold, "relaxed")
    assert result.correct is right and result.value == float(right)


@pytest.mark.parametrize("reply, gold, right", [
    # MathVista's calculate_score.py normalisation, worked by hand
    ("7.53", "7.5", True), ("7.56", "7.5", False),  # round(x, 1) with the gold's one decimal
    ("1.449", "1.45", True), ("1.4", "1.45", False),
    ("5.7", "5", True), ("5", "5", True), ("6", "5", False),  # integers: str(int(float(x))), a truncation
    ("five", "5", False), ("[1, 2]", "[1, 2]", True), ("[1,2]", "[1, 2]", False),  # a list is compared as written
])
def test_mathvista_is_mathvistas_own_rule(reply, gold, right):
    assert score(f"### Answer: {reply}", gold, "mathvista").correct is right


def test_a_chains_own_arithmetic_is_checked_without_the_gold():
    from reasoner_ray.core.reward.consistency import false_equations

    assert false_equations("The digits are red 3, blue 7. 3 x 7 = 21. 21 + 5 = 26. So the answer is 26.") == 0
    assert false_equations("6 x 6 = 48. 48 + 3 = 51.") == 1  # the first is false, the second true of its numbers
    assert false_equations("1 + 2 = 3. 3 - 9 = -6. -6 - 8 = -13.") == 1  # negatives read
    assert false_equations("It is a red circle.") is None  # nothing to check
    assert false_equations("2.5 + 1 = 3.5") is None  # decimals are not read as integers
