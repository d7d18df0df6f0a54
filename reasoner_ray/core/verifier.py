"""A verifier ranks N sampled chains of one question; this module turns its scores into answers and measures it.

A DPO-trained model defines a token-level implicit reward r_t = beta * (log pi(y_t | x, y_<t) - log pi_ref(y_t |
x, y_<t)). The paper ranks chains by the reward of its DPO policy (the "policy" verifier); V-STaR trains a
separate verifier with plain DPO on correct vs incorrect chains (the "verifier" of stage r<k>/verifier). Each
gives three scores per chain (`chain_scores`):

- `sum`: the whole chain's reward, sum_t r_t;
- `mean`: the reward per response token (a long chain is not favoured for being long);
- `step_min`: the smallest reward of any step, a step being a sentence or line of the chain (the sum of r_t over
  its tokens): a chain is as good as its worst step ("free process rewards", arXiv 2412.01981).
Plus `likelihood`: the policy's own mean token log-prob (no reference), to show what a reward adds over it.

Aggregations over one question's chains, for any score (`select`):
- `majority`: the most frequent parsed answer (ties: the answer that appeared first);
- `best_of_n/<score>`: the answer of the chain with the highest score;
- `weighted_vote/<score>`: every parsed answer gets the sum of softmax(score / T) over its chains; the largest
  wins. T is chosen on validation (`choose_temperatures`);
- `oracle`: 1 if any chain is correct (the ceiling any selection can reach); `first_sample`: one chain alone.
Unparsed chains never win a vote but can be picked by best-of-N (and then score their value, usually 0).

`auroc` measures the score itself, before any selection: per question with both right and wrong chains, the
chance that a random right chain scores above a random wrong one (ties count half), averaged over questions.
`mean_rank_correlation` says how far a score only restates another (a reward against the likelihood): the
Spearman correlation of the two over one question's chains, averaged over questions.
Pure: plain numbers in, per-question scores out; `reasoner_ray.core.metrics.accuracy` gives standard errors.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from reasoner_ray.core.metrics import accuracy

SCORES = ("sum", "mean", "step_min")
BASE_METHODS = ("first_sample", "majority", "oracle")
# Multiples of a score's standard deviation (over all chains) tried as the weighted vote's softmax temperature.
TEMPERATURE_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
_STEP_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Chain:
    """One sampled chain: its parsed answer, its score against the gold, and its verifier scores by name."""

    question_id: str
    sample_index: int
    parsed: str | None
    value: float
    scores: Mapping[str, float] = field(default_factory=dict)

    @property
    def answer_key(self) -> str | None:
        return None if self.parsed is None else " ".join(self.parsed.strip().lower().split())


def token_steps(token_texts: Sequence[str]) -> list[int]:
    """The step (sentence or line) each token of a chain belongs to, from the tokens' decoded texts: a token
    belongs to the step where its first non-space character falls."""
    text = "".join(token_texts)
    starts = [m.end() for m in _STEP_BREAK.finditer(text)]
    steps, pos = [], 0
    for piece in token_texts:
        first = pos + (len(piece) - len(piece.lstrip())) if piece.strip() else pos
        steps.append(sum(1 for s in starts if s <= first))
        pos += len(piece)
    return steps


def chain_scores(policy_logps: Sequence[float], ref_logps: Sequence[float], steps: Sequence[int],
                 beta: float) -> dict[str, float]:
    """`sum`, `mean` and `step_min` of the token rewards beta * (policy - reference), per token aligned."""
    if not (len(policy_logps) == len(ref_logps) == len(steps)):
        raise ValueError(f"{len(policy_logps)} policy, {len(ref_logps)} reference log-probs, {len(steps)} steps")
    rewards = [beta * (p - r) for p, r in zip(policy_logps, ref_logps)]
    per_step: dict[int, float] = defaultdict(float)
    for step, reward in zip(steps, rewards):
        per_step[step] += reward
    total = math.fsum(rewards)
    return {"sum": total, "mean": total / max(1, len(rewards)),
            "step_min": min(per_step.values()) if per_step else 0.0}


def likelihood(policy_logps: Sequence[float]) -> float:
    return math.fsum(policy_logps) / max(1, len(policy_logps))


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


def _softmax(chains: list[Chain], score: str, temperature: float) -> dict[int, float]:
    logits = [c.scores[score] / temperature for c in chains]
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return {c.sample_index: e / total for c, e in zip(chains, exps)}


def select(chains: list[Chain], temperatures: Mapping[str, float]) -> dict[str, float]:
    """Every method's score for one question's chains; `temperatures`: score name -> weighted-vote temperature
    (best-of-N runs for every score the chains carry, the weighted vote for those with a temperature)."""
    if not chains:
        raise ValueError("a question needs at least one chain")
    out = {"first_sample": min(chains, key=lambda c: c.sample_index).value,
           "majority": _vote(chains, lambda c: 1.0),
           "oracle": max(c.value for c in chains)}
    for score in chains[0].scores:
        out[f"best_of_n/{score}"] = _best(chains, lambda c, s=score: c.scores[s])
        if score in temperatures:
            weights = _softmax(chains, score, temperatures[score])
            out[f"weighted_vote/{score}"] = _vote(chains, lambda c, w=weights: w[c.sample_index])
    return out


def by_question(chains: Iterable[Chain]) -> dict[str, list[Chain]]:
    grouped: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        grouped[c.question_id].append(c)
    return dict(sorted(grouped.items()))


def score_spread(chains: Iterable[Chain], score: str) -> float:
    """Standard deviation of a score over chains (the unit of the temperature grid); 1 when it is 0 or undefined."""
    values = [c.scores[score] for c in chains]
    if len(values) < 2:
        return 1.0
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return sd if sd > 0 else 1.0


def choose_temperatures(chains: list[Chain], scores: Iterable[str]) -> dict[str, dict]:
    """Per score, the weighted-vote temperature with the best accuracy on these (validation) chains, from
    TEMPERATURE_GRID x the score's spread (ties: the larger temperature, the smoother vote):
    {score: {"temperature", "multiple", "accuracy"}}."""
    questions = list(by_question(chains).values())
    chosen = {}
    for score in scores:
        spread = score_spread(chains, score)
        best = None
        for multiple in TEMPERATURE_GRID:
            t = multiple * spread
            acc = sum(select(q, {score: t})[f"weighted_vote/{score}"] for q in questions) / max(1, len(questions))
            if best is None or acc >= best["accuracy"]:
                best = {"temperature": t, "multiple": multiple, "accuracy": acc}
        chosen[score] = best
    return chosen


def auroc(chains: list[Chain], score: str) -> float | None:
    """P(a right chain scores above a wrong one), ties counting half; None without both kinds."""
    right = [c.scores[score] for c in chains if c.value >= 1.0]
    wrong = [c.scores[score] for c in chains if c.value < 1.0]
    if not right or not wrong:
        return None
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def mean_auroc(chains: Iterable[Chain], score: str) -> dict[str, float]:
    """The per-question AUROC averaged over questions that have both right and wrong chains (one-chain,
    all-right and all-wrong questions say nothing about ranking and are left out): {mean, stderr, questions}."""
    values = [a for q in by_question(chains).values() if (a := auroc(q, score)) is not None]
    acc = accuracy(values)
    return {"mean": acc.mean, "stderr": acc.stderr, "questions": acc.n}


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, tied values sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def rank_correlation(chains: list[Chain], score: str, other: str) -> float | None:
    """Spearman's correlation of two scores over one question's chains; None when either is constant."""
    a, b = _ranks([c.scores[score] for c in chains]), _ranks([c.scores[other] for c in chains])
    mean = (len(a) + 1) / 2
    cov = sum((x - mean) * (y - mean) for x, y in zip(a, b))
    var_a, var_b = sum((x - mean) ** 2 for x in a), sum((y - mean) ** 2 for y in b)
    if var_a == 0 or var_b == 0:
        return None
    return cov / math.sqrt(var_a * var_b)


def mean_rank_correlation(chains: Iterable[Chain], score: str, other: str) -> dict[str, float]:
    """`rank_correlation` averaged over questions where both scores vary: {mean, stderr, questions}."""
    values = [r for q in by_question(chains).values() if (r := rank_correlation(q, score, other)) is not None]
    acc = accuracy(values)
    return {"mean": acc.mean, "stderr": acc.stderr, "questions": acc.n}


def evaluate(chains: Iterable[Chain], temperatures: Mapping[str, float],
             groups_of: Callable[[str], Iterable[str]]) -> dict[str, dict]:
    """{group: {method: {n, accuracy, stderr, vs_majority, vs_majority_stderr}}}; `groups_of(question_id)` names
    a question's groups ("all" is added). `vs_majority` is the paired difference to majority voting."""
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for qid, qchains in by_question(chains).items():
        picked = select(qchains, temperatures)
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
