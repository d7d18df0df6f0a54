"""Verifier scores and selections on hand-made numbers: token steps, step-min, rankings, weighted votes and
their temperature, ties, one-chain and all-correct questions, AUROC, and the paired difference."""

import math

import pytest

from reasoner_ray.core.verifier import (Chain, auroc, chain_scores, choose_temperatures, evaluate, mean_auroc,
                                        mean_rank_correlation, paired_difference, rank_correlation, select,
                                        token_steps)


def chain(i, parsed, value, score, qid="q", **more):
    return Chain(qid, i, parsed, value, {"s": score, **more})


def test_token_steps_follow_sentences_and_lines():
    tokens = ["The", " digits", " are", " red", " 3", ".", " 3", " x", " 7", " =", " 21", ".", "\n", "###", " Answer", ":",
              " 21", "<|im_end|>"]
    # a whitespace-only token (the newline) stays with the step it ends
    assert token_steps(tokens) == [0] * 6 + [1] * 7 + [2] * 5
    assert token_steps([]) == []
    assert token_steps(["one", " line"]) == [0, 0]


def test_chain_scores_worked_by_hand():
    # beta 0.5; per-token log-ratios 1, -1 (step 0) and -4, 2 (step 1): rewards 0.5, -0.5, -2, 1
    got = chain_scores([-1.0, -3.0, -5.0, -1.0], [-2.0, -2.0, -1.0, -3.0], [0, 0, 1, 1], beta=0.5)
    assert got["sum"] == pytest.approx(-1.0)
    assert got["mean"] == pytest.approx(-0.25)
    assert got["step_min"] == pytest.approx(-1.0)  # step 0: 0.5 - 0.5 = 0; step 1: -2 + 1 = -1
    with pytest.raises(ValueError):
        chain_scores([0.0], [0.0, 0.0], [0], 0.1)


def test_step_min_finds_the_wrong_step_a_sum_hides():
    # Chain a: one very wrong step, good elsewhere; chain b: mildly worse everywhere. The sum prefers a, the
    # worst step prefers b.
    a = chain_scores([0.0, 0.0, -3.0], [-1.0, -1.0, -1.0], [0, 1, 2], 1.0)   # steps +1, +1, -2: sum 0
    b = chain_scores([-1.2, -1.2, -1.2], [-1.0, -1.0, -1.0], [0, 1, 2], 1.0)  # steps -0.2 each: sum -0.6
    assert a["sum"] > b["sum"] and a["step_min"] < b["step_min"]


def test_methods_on_one_question():
    # Majority says 5 (wrong, 3 votes); the score prefers the chain answering 7 (right).
    chains = [chain(0, "5", 0.0, -0.1), chain(1, "5", 0.0, -0.1), chain(2, "5", 0.0, -0.1), chain(3, "7", 1.0, 0.4),
              chain(4, None, 0.0, 0.0)]  # unparsed
    got = select(chains, {"s": 1.0})
    assert got["first_sample"] == 0.0 and got["majority"] == 0.0 and got["oracle"] == 1.0
    assert got["best_of_n/s"] == 1.0
    # softmax at T = 1: "5" gets 3 e^-0.1 = 2.71, "7" e^0.4 = 1.49 (of the same normaliser): the vote says 5
    assert 3 * math.exp(-0.1) > math.exp(0.4)
    assert got["weighted_vote/s"] == 0.0
    # at T = 0.1 the right chain's weight e^4 = 54.6 beats 3 e^-1 = 1.1
    assert select(chains, {"s": 0.1})["weighted_vote/s"] == 1.0
    assert "weighted_vote/s" not in select(chains, {})  # no temperature: no weighted vote for that score


def test_ties_one_chain_and_all_correct_questions():
    a, b = chain(1, "7", 1.0, 0.0), chain(0, "5", 0.0, 0.0)
    got = select([a, b], {"s": 1.0})  # equal scores, one vote each: sample 0 ("5") wins every way
    assert got["best_of_n/s"] == 0.0 and got["majority"] == 0.0 and got["weighted_vote/s"] == 0.0
    assert select([chain(0, None, 0.0, 0.0)], {"s": 1.0})["majority"] == 0.0  # nothing parsed: no vote wins
    one = select([chain(0, "3", 1.0, -2.0)], {"s": 1.0})
    assert one["majority"] == one["best_of_n/s"] == one["weighted_vote/s"] == one["oracle"] == 1.0
    with pytest.raises(ValueError):
        select([], {})


def test_answers_are_grouped_after_normalising_case_and_space():
    chains = [chain(0, "Blue ", 1.0, 0), chain(1, "red", 0.0, 0), chain(2, "blue", 1.0, 0)]
    assert select(chains, {})["majority"] == 1.0


def test_auroc_worked_by_hand_with_ties():
    # right chains score 3 and 1; wrong chains 1 and 0: pairs (3>1) (3>0) (1=1: half) (1>0) -> 3.5 / 4
    chains = [chain(0, "a", 1.0, 3.0), chain(1, "a", 1.0, 1.0), chain(2, "b", 0.0, 1.0), chain(3, "c", 0.0, 0.0)]
    assert auroc(chains, "s") == pytest.approx(0.875)
    assert auroc([chain(0, "a", 1.0, 1.0), chain(1, "a", 1.0, 2.0)], "s") is None  # all correct: no ranking
    assert auroc([chain(0, "b", 0.0, 1.0)], "s") is None  # one chain
    # averaged over the questions that have both kinds: (0.875 + 0.0) / 2; the all-correct question is left out
    other = [chain(0, "x", 1.0, 0.0, qid="r"), chain(1, "y", 0.0, 5.0, qid="r")]
    only_right = [chain(0, "z", 1.0, 0.0, qid="t")]
    got = mean_auroc(chains + other + only_right, "s")
    assert got["questions"] == 2 and got["mean"] == pytest.approx(0.4375)
    assert got["stderr"] == pytest.approx(0.4375)  # sd of [0.875, 0] is 0.619, / sqrt 2


def test_rank_correlation_worked_by_hand_with_ties():
    # a reward that runs exactly against the likelihood: -1
    reversed_ = [chain(i, "a", 1.0, float(i), likelihood=float(-i)) for i in range(4)]
    assert rank_correlation(reversed_, "s", "likelihood") == pytest.approx(-1.0)
    # s = 1, 1, 2, 3 (ranks 1.5, 1.5, 3, 4) against 1, 2, 3, 4: cov 4.5, variances 4.5 and 5 -> 3 / sqrt(10)
    tied = [chain(i, "a", 1.0, s, qid="r", likelihood=float(i)) for i, s in enumerate((1.0, 1.0, 2.0, 3.0))]
    assert rank_correlation(tied, "s", "likelihood") == pytest.approx(3 / math.sqrt(10))
    constant = [chain(i, "a", 1.0, 7.0, qid="t", likelihood=float(i)) for i in range(3)]
    assert rank_correlation(constant, "s", "likelihood") is None  # says nothing about order: left out
    got = mean_rank_correlation(reversed_ + tied + constant, "s", "likelihood")
    assert got["questions"] == 2 and got["mean"] == pytest.approx((3 / math.sqrt(10) - 1) / 2)


def test_temperature_is_chosen_on_the_chains_given():
    # Questions a1, a2: two wrong votes (score 0) against one right chain scoring 1: the right answer wins when
    # e^(1/T) > 2, i.e. T < 1.44. Question b: two right votes (score 0) against a wrong chain scoring 0.5: the
    # right answer wins when e^(0.5/T) < 2, i.e. T > 0.72. The scores' sd is 0.441, so of the grid's temperatures
    # (0.1, 0.3, 1, 3, 10 sd = 0.044, 0.13, 0.44, 1.32, 4.41) only 3 sd gets all three right.
    a = [chain(i, ans, v, s, qid=qid) for qid in ("a1", "a2") for i, ans, v, s in ((0, "5", 0.0, 0.0), (1, "5", 0.0, 0.0),
                                                                                (2, "7", 1.0, 1.0))]
    b = [chain(0, "3", 1.0, 0.0, qid="b"), chain(1, "3", 1.0, 0.0, qid="b"), chain(2, "4", 0.0, 0.5, qid="b")]
    chosen = choose_temperatures(a + b, ["s"])["s"]
    assert chosen["multiple"] == 3.0 and chosen["accuracy"] == 1.0
    assert chosen["temperature"] == pytest.approx(3 * 0.44096, rel=1e-4)
    only_b = choose_temperatures(b, ["s"])["s"]
    assert only_b["accuracy"] == 1.0 and only_b["multiple"] == 10.0  # ties go to the larger (smoother) temperature


def test_evaluate_groups_and_paired_difference():
    chains = [chain(0, "5", 0.0, -1, qid="a"), chain(1, "5", 0.0, -1, qid="a"), chain(2, "7", 1.0, 1, qid="a"),
              chain(0, "3", 1.0, 0, qid="b"), chain(1, "3", 1.0, 0, qid="b")]
    out = evaluate(chains, {"s": 1.0}, lambda qid: ["multi_step"] if qid == "a" else [])
    assert out["all"]["majority"]["n"] == 2 and out["all"]["majority"]["accuracy"] == 0.5
    assert out["all"]["best_of_n/s"]["accuracy"] == 1.0
    assert out["multi_step"]["best_of_n/s"]["n"] == 1
    assert out["all"]["best_of_n/s"]["vs_majority"] == pytest.approx(0.5)
    # paired differences [1, 0]: mean 0.5, sample sd 0.707, se 0.5
    assert paired_difference([1, 1], [0, 1]) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError):
        paired_difference([1], [1, 0])
