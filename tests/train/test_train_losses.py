"""DPO losses and metrics, worked out by hand.

One pair: policy chosen/rejected = -10 / -14, reference = -11 / -12, beta = 0.5
    z = (-10 - -11) - (-14 - -12) = 1 - (-2) = 3;  beta z = 1.5
    sigmoid:  -log sigmoid(1.5) = log(1 + e^-1.5) = 0.201413
    with label smoothing 0.1: 0.9 * 0.201413 + 0.1 * log(1 + e^1.5) = 0.181272 + 0.1 * 1.701413 = 0.351413
    ipo with 4 chosen and 2 rejected tokens: (1/4 - (-2)/2 - 1/(2*0.5))^2 = (0.25 + 1 - 1)^2 = 0.0625
    nll term (weight 2): 2 * (10 / 4) = 5.0
    dpop: the chosen chain rose above its reference (-10 > -11), so no penalty: the sigmoid loss, 0.201413
A pair whose chosen chain fell: policy -12 / -16, reference -11 / -12: z = -1 - (-4) = 3 again, the chosen chain
fell by 1, so dpop with lambda 2 sees z = 3 - 2 * 1 = 1: -log sigmoid(0.5) = 0.474077
    rewards: chosen 0.5, rejected -1.0, margin 1.5, accuracy 1
"""

from __future__ import annotations

import math

import pytest
import torch

from reasoner_ray.train.losses import PairLogps, dpo_loss, sft_loss
from reasoner_ray.train.logprobs import sequence_logps


def one_pair():
    t = lambda x: torch.tensor([float(x)])  # noqa: E731
    return PairLogps(t(-10), t(-14), t(-11), t(-12), t(4), t(2))


def test_sigmoid_loss_and_trl_metric_names():
    loss, m = dpo_loss(one_pair(), "sigmoid", beta=0.5)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-1.5)), abs=1e-6)
    assert float(loss) == pytest.approx(0.201413, abs=1e-6)
    assert m["rewards/chosen"] == pytest.approx(0.5)
    assert m["rewards/rejected"] == pytest.approx(-1.0)
    assert m["rewards/margins"] == pytest.approx(1.5)
    assert m["rewards/accuracies"] == 1.0
    assert (m["logps/chosen"], m["logps/rejected"]) == (-10.0, -14.0)


def test_label_smoothing():
    loss, _ = dpo_loss(one_pair(), "sigmoid", beta=0.5, label_smoothing=0.1)
    assert float(loss) == pytest.approx(0.351413, abs=1e-5)


def test_ipo_uses_per_token_log_ratios():
    loss, _ = dpo_loss(one_pair(), "ipo", beta=0.5)
    assert float(loss) == pytest.approx(0.0625, abs=1e-7)


def test_dpop_penalises_only_a_falling_chosen_chain():
    t = lambda x: torch.tensor([float(x)])  # noqa: E731
    fell = PairLogps(t(-12), t(-16), t(-11), t(-12), t(4), t(2))
    assert float(dpo_loss(fell, "sigmoid", beta=0.5)[0]) == pytest.approx(0.201413, abs=1e-6)
    assert float(dpo_loss(fell, "dpop", beta=0.5, dpop_lambda=2.0)[0]) == pytest.approx(0.474077, abs=1e-6)
    assert float(dpo_loss(one_pair(), "dpop", beta=0.5, dpop_lambda=2.0)[0]) == pytest.approx(0.201413, abs=1e-6)


def test_nll_term_on_chosen():
    base, _ = dpo_loss(one_pair(), "sigmoid", beta=0.5)
    loss, m = dpo_loss(one_pair(), "sigmoid", beta=0.5, nll_weight=2.0)
    assert m["nll_loss"] == pytest.approx(2.5)
    assert float(loss - base) == pytest.approx(5.0, abs=1e-6)


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="dpo.loss 'hinge' is not one of"):
        dpo_loss(one_pair(), "hinge")


def test_sequence_logps_worked_example():
    # vocab 2, logits (0, ln 3): p = (1/4, 3/4). Targets 1, 0, 1 with the middle one masked out.
    logits = torch.tensor([[[0.0, math.log(3)]] * 3])
    got = sequence_logps(logits, torch.tensor([[1, 0, 1]]), torch.tensor([[1, 0, 1]]))
    assert float(got) == pytest.approx(2 * math.log(0.75), abs=1e-6)


def test_sft_loss_is_mean_over_labelled_tokens():
    logits = torch.tensor([[[0.0, math.log(3)]] * 4])
    labels = torch.tensor([[-100, 1, 0, -100]])  # positions 1 and 2 predicted from 0 and 1
    expected = -(math.log(0.75) + math.log(0.25)) / 2
    assert float(sft_loss(logits, labels)) == pytest.approx(expected, abs=1e-6)


def test_sft_loss_weights_every_target_token_of_the_step_equally():
    """Two micro-batches of one step: a direct answer (2 target tokens) and a CoT chain (8). DeepSpeed averages
    micro-batch losses (over accumulation and ranks); with each divided by the step's token share, that average
    is the mean over all 10 tokens, not the mean of two per-micro-batch means (which gives each of the 2 direct
    tokens 4x the weight of a CoT token)."""
    from reasoner_ray.train.steps import target_tokens, token_share

    torch.manual_seed(0)
    vocab = 7
    short = torch.tensor([[-100, -100, 3, 4]])  # 2 targets after the shift
    long = torch.tensor([[-100] + [1, 2, 3, 4, 5, 6, 0, 1]])  # 8 targets
    logits = [torch.randn(1, 4, vocab), torch.randn(1, 9, vocab)]
    tokens = [target_tokens(y) for y in (short, long)]
    assert tokens == [2, 8]
    share = token_share(sum(tokens), accumulation=2)  # one process here: no all-reduce
    deepspeed_average = sum(sft_loss(x, y, share) for x, y in zip(logits, (short, long))) / 2
    token_nll = torch.cat([
        -sequence_logps(x[:, :-1], y[:, 1:], (y[:, 1:] != -100).float()).reshape(1) for x, y in zip(logits, (short, long))
    ]).sum()
    assert float(deepspeed_average) == pytest.approx(float(token_nll) / 10, rel=1e-6)
    per_micro_means = sum(float(sft_loss(x, y)) for x, y in zip(logits, (short, long))) / 2
    assert per_micro_means != pytest.approx(float(token_nll) / 10, rel=1e-3)
