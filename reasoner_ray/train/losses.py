"""DPO losses through a registry, and the metrics under TRL's names. Pure torch; no Ray, no DeepSpeed.

With policy log-probs pi_c, pi_r and reference log-probs ref_c, ref_r (sums over the response tokens):
    z = (pi_c - ref_c) - (pi_r - ref_r)
    sigmoid (DPO, Rafailov et al. eq. 7, with label smoothing eps of conservative DPO):
        loss = -(1 - eps) * log sigmoid(beta z) - eps * log sigmoid(-beta z)
    ipo (Azar et al. eq. 17, on per-token averaged log-ratios as TRL does):
        loss = (z_avg - 1 / (2 beta))^2
    dpop (DPO-Positive, Pal et al. 2024 eq. 3): the sigmoid loss on z - lambda * max(0, ref_c - pi_c), so a pair
        gains nothing from a margin bought by lowering the chosen chain below its reference probability
    plus, when nll_weight > 0, nll_weight * (-pi_c / chosen_tokens): the chosen response's mean token NLL, the
    usual fix when the chosen reward keeps falling.
Worked numbers are in tests/train/test_losses.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class PairLogps:
    policy_chosen: object  # (B,) tensors
    policy_rejected: object
    ref_chosen: object
    ref_rejected: object
    chosen_tokens: object  # (B,) number of response tokens, for IPO and the NLL term
    rejected_tokens: object


@dataclass(frozen=True)
class LossSettings:
    beta: float
    label_smoothing: float
    dpop_lambda: float


def _margin(lp: PairLogps):
    return (lp.policy_chosen - lp.ref_chosen) - (lp.policy_rejected - lp.ref_rejected)


def _smoothed_sigmoid(z, s: LossSettings):
    import torch.nn.functional as F

    return -(1 - s.label_smoothing) * F.logsigmoid(s.beta * z) - s.label_smoothing * F.logsigmoid(-s.beta * z)


def _sigmoid(lp: PairLogps, s: LossSettings):
    return _smoothed_sigmoid(_margin(lp), s)


def _dpop(lp: PairLogps, s: LossSettings):
    chosen_loss = (lp.ref_chosen - lp.policy_chosen).clamp_min(0)
    return _smoothed_sigmoid(_margin(lp) - s.dpop_lambda * chosen_loss, s)


def _ipo(lp: PairLogps, s: LossSettings):
    chosen = (lp.policy_chosen - lp.ref_chosen) / lp.chosen_tokens.clamp_min(1)
    rejected = (lp.policy_rejected - lp.ref_rejected) / lp.rejected_tokens.clamp_min(1)
    return (chosen - rejected - 1 / (2 * s.beta)) ** 2


LossFn = Callable[[PairLogps, LossSettings], object]
DPO_LOSSES: dict[str, LossFn] = {"sigmoid": _sigmoid, "ipo": _ipo, "dpop": _dpop}


def dpo_loss(lp: PairLogps, loss_type: str = "sigmoid", beta: float = 0.1, label_smoothing: float = 0.0,
             nll_weight: float = 0.0, dpop_lambda: float = 50.0):  # Pal et al.'s lambda for maths
    """(scalar loss = batch mean, metrics dict of floats under TRL's names)."""
    try:
        loss_fn = DPO_LOSSES[loss_type]
    except KeyError:
        raise ValueError(f"dpo.loss {loss_type!r} is not one of {sorted(DPO_LOSSES)}") from None
    per_pair = loss_fn(lp, LossSettings(beta, label_smoothing, dpop_lambda))
    loss = per_pair.mean()
    metrics = dpo_metrics(lp, beta)
    if nll_weight > 0:
        nll = (-lp.policy_chosen / lp.chosen_tokens.clamp_min(1)).mean()
        loss = loss + nll_weight * nll
        metrics["nll_loss"] = float(nll.detach())
    metrics["loss"] = float(loss.detach())
    return loss, metrics


def dpo_metrics(lp: PairLogps, beta: float) -> dict[str, float]:
    chosen = beta * (lp.policy_chosen - lp.ref_chosen).detach()
    rejected = beta * (lp.policy_rejected - lp.ref_rejected).detach()
    return {
        "rewards/chosen": float(chosen.mean()),
        "rewards/rejected": float(rejected.mean()),
        "rewards/accuracies": float((chosen > rejected).float().mean()),
        "rewards/margins": float((chosen - rejected).mean()),
        "logps/chosen": float(lp.policy_chosen.detach().mean()),
        "logps/rejected": float(lp.policy_rejected.detach().mean()),
    }


def sft_loss(logits, labels, token_share: float | None = None):
    """Summed token NLL over the positions whose label is not -100, divided by `token_share`.

    In training `token_share` is the optimizer step's target tokens (all ranks, all micro-batches) divided by
    accumulation x ranks (`steps.token_share`): DeepSpeed averages the micro-batch losses over both, so the
    gradient is that of the mean over every target token of the step, each weighted equally, as torchtune and
    nanochat normalise. A per-micro-batch mean would weight a token of a 2-token direct answer like 4 tokens of an
    8-token CoT chain batched separately. None: this batch's own count (what HF's labels loss computes)."""
    from reasoner_ray.train.logprobs import shifted_logps

    mask = (labels != -100).long()
    total = shifted_logps(logits, labels, mask)
    divisor = mask[:, 1:].sum().clamp_min(1) if token_share is None else token_share
    return -total.sum() / divisor
