"""The DPO model as a verifier: pick one of N sampled chains per question by the implicit reward.

DPO's policy defines a reward r(x, y) = beta * (log pi_dpo(y|x) - log pi_ref(y|x)), which the paper also
uses as a verifier. For N sampled CoT chains of one question this module compares ways of turning the
chains into one answer:

- `majority`: the most frequent parsed answer (ties: the answer that appeared first);
- `best_of_n_sum`: the chain with the highest summed reward;
- `best_of_n_mean`: the highest reward per response token (long chains are not favoured for being long);
- `weighted_vote`: every parsed answer gets the sum of softmax(rewards) of its chains; the largest wins;
- `likelihood`: the chain the policy itself finds likeliest per token (no reference: shows what the reward adds);
- `oracle`: 1 if any chain is correct (the ceiling any selection can reach);
- `first_sample`: the first chain alone (what one sample scores, for scale).

Unparsed chains never win a vote but can be picked by best-of-N (and then score their value, usually 0).
Pure: plain numbers in, per-question scores out; `reasoner_ray.core.metrics.accuracy` gives standard errors.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reasoner_ray.core.metrics import accuracy


@dataclass(frozen=True)
class Chain:
    """One sampled chain: its parsed answer, its score against the gold, and its log-probs."""

    question_id: str
    sample_index: int
    parsed: str | None
    value: float
    policy_logp: float
    ref_logp: float
    tokens: int

    def reward(self, beta: float) -> float:
        return beta * (self.policy_logp - self.ref_logp)

    def reward_per_token(self, beta: float) -> float:
        return self.reward(beta) / max(1, self.tokens)

    @property
    def answer_key(self) -> str | None:
        return None if self.parsed is None else " ".join(self.parsed.strip().lower().split())


def _vote(chains: list[Chain], weight: Callable[[Chain], float]) -> float:
    """Value of the answer with the largest total weight (ties: the answer seen first)."""
    totals: dict[str, float] = defaultdict(float)
    value_of: dict[str, float] = {}
    for c in sorted(chains, key=lambda c: c.sample_index):
        if c.answer_key is None:
            continue
        totals[c.answer_key] += weight(c)
        value_of.setdefault(c.answer_key, c.value)
    if not totals:
        return 0.0
    best = max(totals.values())
    winner = next(k for k, v in totals.items() if v == best)  # dicts keep first-seen order
    return value_of[winner]


def _best(chains: list[Chain], key: Callable[[Chain], float]) -> float:
    ordered = sorted(chains, key=lambda c: c.sample_index)
    return max(ordered, key=key).value  # max keeps the first of equal keys


def _softmax_weights(chains: list[Chain], beta: float) -> dict[int, float]:
    rewards = [c.reward(beta) for c in chains]
    top = max(rewards)
    exps = [math.exp(r - top) for r in rewards]
    total = sum(exps)
    return {c.sample_index: e / total for c, e in zip(chains, exps)}


def select(chains: list[Chain], beta: float) -> dict[str, float]:
    """Every method's score for one question's chains."""
    if not chains:
        raise ValueError("a question needs at least one chain")
    weights = _softmax_weights(chains, beta)
    return {
        "first_sample": min(chains, key=lambda c: c.sample_index).value,
        "majority": _vote(chains, lambda c: 1.0),
        "best_of_n_sum": _best(chains, lambda c: c.reward(beta)),
        "best_of_n_mean": _best(chains, lambda c: c.reward_per_token(beta)),
        "weighted_vote": _vote(chains, lambda c: weights[c.sample_index]),
        "likelihood": _best(chains, lambda c: c.policy_logp / max(1, c.tokens)),
        "oracle": max(c.value for c in chains),
    }


METHODS = ("first_sample", "majority", "best_of_n_sum", "best_of_n_mean", "weighted_vote", "likelihood", "oracle")


def evaluate(chains: Iterable[Chain], beta: float, groups_of: Callable[[str], Iterable[str]]) -> dict[str, dict]:
    """{group: {method: {n, accuracy, stderr, vs_majority, vs_majority_stderr}}}; `groups_of(question_id)` names
    a question's groups ("all" is added). `vs_majority` is the paired difference to majority voting."""
    by_question: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        by_question[c.question_id].append(c)
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for qid, qchains in sorted(by_question.items()):
        picked = select(qchains, beta)
        for group in ("all", *groups_of(qid)):
            for method, value in picked.items():
                scores[group][method].append(value)
    out: dict[str, dict] = {}
    for group, methods in scores.items():
        out[group] = {}
        for method, values in methods.items():
            diff, diff_se = paired_difference(values, methods["majority"])
            out[group][method] = {**accuracy(values).as_dict(), "vs_majority": diff, "vs_majority_stderr": diff_se}
    return out


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of a - b over the same questions and its standard error (what 'beats by k standard errors' uses)."""
    if len(a) != len(b):
        raise ValueError("paired scores need the same questions")
    acc = accuracy([x - y for x, y in zip(a, b)])
    return acc.mean, acc.stderr
