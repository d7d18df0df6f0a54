"""Property tests for the reward: value ranges, stating the gold is always right, agreement with references."""

from __future__ import annotations

import logging
import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reasoner_ray.core.reward import extract_final_answer, score
from reasoner_ray.core.reward.math_answer import numbers_equal, plain_number
from reasoner_ray.core.reward.text import consensus_accuracy

# Short answers as datasets write them: no newline, no markdown emphasis or `$`, which extraction strips.
answer_text = st.text(alphabet=string.ascii_letters + string.digits + " .,'-/%()?!&:#+", min_size=1, max_size=30).filter(
    lambda s: s.strip() != "" and "### Answer:" not in s
)
rationale = st.text(alphabet=string.ascii_letters + string.digits + " .,\n", max_size=200).filter(
    lambda s: "answer" not in s.lower() and "boxed" not in s
)
numerals = st.one_of(
    st.integers(-10**9, 10**9).map(str),
    st.integers(0, 10**9).map(lambda n: f"{n:,}"),
    st.decimals(min_value=-10**6, max_value=10**6, places=3, allow_nan=False, allow_infinity=False).map(str),
    st.integers(0, 100).map(lambda n: f"{n}%"),
)
math_golds = st.one_of(
    numerals.filter(lambda s: "," not in s and "%" not in s),
    st.tuples(st.integers(-50, 50), st.integers(1, 50)).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
    st.sampled_from(["\\sqrt{2}", "\\pi", "2\\sqrt{3}", "x + 1", "\\frac{\\pi}{4}", "3^{2}", "\\infty", "(1, 2)"]),
)
option_word = st.text(alphabet=string.ascii_lowercase, min_size=2, max_size=8).filter(
    lambda w: w not in {"answer", "option", "choice", "the", "correct", "final", "best"}
)


def chain(reasoning: str, answer: str) -> str:
    return f"{reasoning}\n### Answer: {answer}"


@given(rationale, answer_text)
def test_extraction_returns_the_stated_answer(reasoning, answer):
    assert extract_final_answer(chain(reasoning, answer)) == answer.strip()


@settings(max_examples=200)
@given(
    response=st.text(max_size=300),
    answer_type=st.sampled_from(["yes_no", "number", "open", "anls"]),
    gold=st.one_of(answer_text, st.lists(answer_text, min_size=1, max_size=12)),
)
def test_value_in_unit_interval(response, answer_type, gold):
    if answer_type == "yes_no":
        gold = "yes"
    result = score(response, gold, answer_type)
    assert 0.0 <= result.value <= 1.0
    assert result.correct <= (result.value > 0)
    assert (result.parsed is None) == (result.reason == "unparsed")


@given(rationale, st.lists(option_word, min_size=2, max_size=6, unique=True), st.data())
def test_stating_the_gold_option_is_correct(reasoning, options, data):
    index = data.draw(st.integers(0, len(options) - 1))
    gold = data.draw(st.sampled_from([options[index], "ABCDEF"[index]]))
    stated = data.draw(
        st.sampled_from(["{L}", "({L})", "{L}.", "{L}) {T}", "{T}", "{T}.", "({L}) {T}"])
    ).format(L="ABCDEF"[index], T=options[index])
    result = score(chain(reasoning, stated), gold, "multiple_choice", options)
    assert result.correct and result.value == 1.0
    other = (index + 1) % len(options)
    assert not score(chain(reasoning, "ABCDEF"[other]), gold, "multiple_choice", options).correct


@given(rationale, st.sampled_from(["yes", "Yes", "no", "NO"]), st.sampled_from(["", ".", ", it is"]))
def test_stating_yes_no_gold_is_correct(reasoning, gold, tail):
    assert score(chain(reasoning, gold + tail), gold, "yes_no").correct


@given(rationale, st.one_of(numerals, answer_text))
def test_stating_the_number_gold_is_correct(reasoning, gold):
    result = score(chain(reasoning, gold), gold, "number")
    assert result.correct and result.value == 1.0


@given(rationale, answer_text, st.sampled_from(["open", "anls"]))
def test_stating_the_text_gold_is_correct(reasoning, gold, answer_type):
    result = score(chain(reasoning, gold), gold, answer_type)
    assert result.correct and result.value == 1.0


@given(rationale, answer_text, st.lists(answer_text, max_size=7), st.randoms())
def test_stating_an_answer_three_humans_gave_is_correct(reasoning, stated, others, rng):
    humans = [stated] * 3 + others + ["zzz other"] * max(0, 7 - len(others))
    rng.shuffle(humans)
    result = score(chain(reasoning, stated), humans, "open")
    assert result.correct and result.value >= 0.9


@settings(max_examples=60, deadline=None)  # the first call starts the math-verify worker
@given(rationale, math_golds)
def test_stating_the_math_gold_is_correct(reasoning, gold):
    result = score(chain(reasoning, gold), gold, "math")
    assert result.correct and result.value == 1.0


def official_vqa_accuracy(answer: str, humans: list[str]) -> float:
    """vqaEval.py's loop, verbatim in spirit: for each human, the others that match, min(1, n / 3), averaged."""
    accuracies = []
    for left_out in range(len(humans)):
        others = humans[:left_out] + humans[left_out + 1 :]
        accuracies.append(min(1.0, sum(h == answer for h in others) / 3))
    return sum(accuracies) / len(accuracies)


@given(st.lists(st.sampled_from(["red", "blue", "green", "dark red"]), min_size=10, max_size=12),
       st.sampled_from(["red", "blue", "green", "dark red", "pink"]))  # fmt: skip
def test_vqa_accuracy_closed_form_matches_official_loop(humans, answer):
    value, correct = consensus_accuracy(answer, tuple(humans))
    assert abs(value - official_vqa_accuracy(answer, humans)) < 1e-12
    assert correct == (humans.count(answer) >= 3)


plain_numerals = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.decimals(min_value=-100, max_value=100, places=7, allow_nan=False, allow_infinity=False).map(str),
    st.tuples(st.integers(-99, 99), st.integers(1, 99)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.tuples(st.integers(0, 99), st.integers(1, 99)).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
)


# A fraction next to its decimal rendering at 1..9 places: equal or not depending on math-verify's 6-place rounding.
near_pairs = st.tuples(st.integers(-99, 99), st.integers(1, 99), st.integers(1, 9)).map(
    lambda t: (f"{t[0]}/{t[1]}", f"{t[0] / t[1]:.{t[2]}f}")
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.tuples(plain_numerals, plain_numerals), near_pairs))
def test_plain_number_fast_path_agrees_with_math_verify(pair):
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    gold, answer = pair
    gold_number, answer_number = plain_number(gold), plain_number(answer)
    assume(gold_number is not None and answer_number is not None)
    expected = verify(parse(f"${gold}$", parsing_timeout=None), parse(f"${answer}$", parsing_timeout=None),
                      timeout_seconds=None)  # fmt: skip
    assert numbers_equal(gold_number, answer_number) == expected
    assert numbers_equal(gold_number, gold_number)


# Constants math-verify must evaluate; a gold's value lets plain answers far from it be rejected without it.
CONSTANTS = {"\\sqrt{2}": 2**0.5, "2\\sqrt{3}": 2 * 3**0.5, "\\frac{\\pi}{4}": 0.7853981633974483, "3\\pi": 9.42477796076938,
             "\\sqrt{12}": 12**0.5, "\\frac{\\sqrt{3}}{2}": 3**0.5 / 2, "45^\\circ": 45.0, "1000\\sqrt{5}": 1000 * 5**0.5}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(CONSTANTS)), st.data())
def test_math_fast_rejects_agree_with_math_verify(gold, data):
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    value = CONSTANTS[gold] * data.draw(st.sampled_from([1.0, 1.0, 1.0 + 1e-7, 1.0 + 1e-4, 1.5, -1.0]))
    answer = data.draw(st.one_of(
        st.integers(0, 10).map(lambda places: f"{value:.{places}f}"),
        st.sampled_from(sorted(CONSTANTS)),
    ))  # fmt: skip
    expected = verify(parse(f"${gold}$", parsing_timeout=None), parse(f"${answer}$", parsing_timeout=None),
                      timeout_seconds=None)  # fmt: skip
    assert score(chain("", answer), gold, "math").correct == expected
