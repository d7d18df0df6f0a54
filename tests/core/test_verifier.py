"""The DPO verifier on hand-made log-probs: rankings, weighted votes, ties, and the paired difference."""

import math

import pytest

from reasoner_ray.core.verifier import Chain, evaluate, paired_difference, select


def chain(i, parsed, value, policy, ref, tokens=10, qid="q"):
    return Chain(qid, i, parsed, value, policy, ref, tokens)


def test_methods_on_one_question():
    # Majority says 5 (wrong, 3 votes); the implicit reward prefers the chain answering 7 (right).
    chains = [
        chain(0, "5", 0.0, -10.0, -9.0),   # reward 0.1 * -1 = -0.1
        chain(1, "5", 0.0, -12.0, -11.0),  # -0.1
        chain(2, "5", 0.0, -11.0, -10.0),  # -0.1
        chain(3, "7", 1.0, -8.0, -12.0),   # +0.4
        chain(4, None, 0.0, -5.0, -5.0),   # unparsed: 0
    ]
    got = select(chains, beta=0.1)
    assert got["first_sample"] == 0.0
    assert got["majority"] == 0.0
    assert got["best_of_n_sum"] == 1.0
    assert got["oracle"] == 1.0
    # softmax weights: three chains at exp(-0.1), one at exp(0.4), one unparsed at exp(0): votes for "5" total
    # 3 e^-0.1 = 2.71 vs e^0.4 = 1.49, so the weighted vote still says 5.
    assert 3 * math.exp(-0.1) > math.exp(0.4)
    assert got["weighted_vote"] == 0.0
    # with beta = 1 the right chain's weight e^4 = 54.6 beats 3 e^-1 = 1.1
    assert select(chains, beta=1.0)["weighted_vote"] == 1.0


def test_per_token_reward_does_not_favour_length():
    long_right = chain(0, "7", 1.0, -40.0, -50.0, tokens=100)   # reward 1.0, 0.01 per token
    short_wrong = chain(1, "5", 0.0, -5.0, -10.0, tokens=10)    # reward 0.5, 0.05 per token
    got = select([long_right, short_wrong], beta=0.1)
    assert got["best_of_n_sum"] == 1.0 and got["best_of_n_mean"] == 0.0
    assert got["likelihood"] == 1.0  # policy log-prob per token: -40/100 = -0.4 beats -5/10 = -0.5


def test_ties_go_to_the_first_sample():
    a, b = chain(1, "7", 1.0, -5.0, -5.0), chain(0, "5", 0.0, -5.0, -5.0)
    got = select([a, b], beta=0.1)  # equal rewards, one vote each: sample 0 ("5") wins both ways
    assert got["best_of_n_sum"] == 0.0 and got["majority"] == 0.0 and got["weighted_vote"] == 0.0
    assert select([chain(0, None, 0.0, 0, 0)], 0.1)["majority"] == 0.0  # nothing parsed: no vote wins


def test_answers_are_grouped_after_normalising_case_and_space():
    chains = [chain(0, "Blue ", 1.0, 0, 0), chain(1, "red", 0.0, 0, 0), chain(2, "blue", 1.0, 0, 0)]
    assert select(chains, 0.1)["majority"] == 1.0


def test_evaluate_groups_and_paired_difference():
    chains = [chain(0, "5", 0.0, -1, 0, qid="a"), chain(1, "5", 0.0, -1, 0, qid="a"), chain(2, "7", 1.0, 0, -1, qid="a"),
              chain(0, "3", 1.0, 0, 0, qid="b"), chain(1, "3", 1.0, 0, 0, qid="b")]
    out = evaluate(chains, 0.1, lambda qid: ["multi_step"] if qid == "a" else [])
    assert out["all"]["majority"]["n"] == 2 and out["all"]["majority"]["accuracy"] == 0.5
    assert out["all"]["best_of_n_sum"]["accuracy"] == 1.0
    assert out["multi_step"]["best_of_n_sum"]["n"] == 1
    assert out["all"]["best_of_n_sum"]["vs_majority"] == pytest.approx(0.5)
    # paired differences [1, 0]: mean 0.5, sample sd 0.707, se 0.5
    assert paired_difference([1, 1], [0, 1]) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError):
        select([], 0.1)
