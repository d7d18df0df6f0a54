"""Evaluation summaries: accuracy per style and answer type, with the standard error of the mean."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from reasoner_ray.core.reward.base import GOLD_ERROR, TIMEOUT

ENDPOINT_ERROR = "endpoint_error"
# Scores that say nothing about the model: the row's gold cannot be read (a data error), the equivalence check
# ran out of time (correct answers do on a loaded machine), or the endpoint under evaluation never replied
# (after its retries). Left out of accuracies and counted.
UNSCORED_REASONS = (GOLD_ERROR, TIMEOUT, ENDPOINT_ERROR)


@dataclass(frozen=True)
class Accuracy:
    n: int
    mean: float
    stderr: float

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "accuracy": self.mean, "stderr": self.stderr}


def accuracy(values: Iterable[float]) -> Accuracy:
    """Mean of per-question scores in [0, 1] and its standard error (sample std / sqrt(n); 0 when n < 2)."""
    vals = list(values)
    n = len(vals)
    if n == 0:
        return Accuracy(0, 0.0, 0.0)
    mean = sum(vals) / n
    if n < 2:
        return Accuracy(n, mean, 0.0)
    var = sum((v - mean) ** 2 for v in vals) / (n - 1)
    return Accuracy(n, mean, math.sqrt(var / n))


def summarize(records: Iterable[dict]) -> dict[str, dict]:
    """records: {style, answer_type, value[, reason, tags]} -> {style: {"all": {...}, "<answer_type>": {...},
    "<tag>": {...}}}: every row counts in "all", its answer type's group and each of its tags' groups. A row whose
    reason is in UNSCORED_REASONS is left out of the accuracy (never a 0) and counted in the group's `unscored`
    ({reason: rows}), so a summary says how many rows it could not score."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    unscored: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in records:
        reason = r.get("reason")
        for group in ("all", r["answer_type"], *(r.get("tags") or ())):
            key = (r["style"], group)
            if reason in UNSCORED_REASONS:
                unscored[key][reason] += 1
            else:
                groups[key].append(float(r["value"]))
    out: dict[str, dict] = defaultdict(dict)
    for style, kind in sorted(set(groups) | set(unscored)):
        out[style][kind] = {**accuracy(groups.get((style, kind), [])).as_dict(),
                            "unscored": dict(sorted(unscored[(style, kind)].items()))}
    return dict(out)


def majority_baseline(answers: Iterable[str]) -> float:
    """Accuracy of always answering the most frequent gold answer."""
    counts: dict[str, int] = defaultdict(int)
    total = 0
    for a in answers:
        counts[a] += 1
        total += 1
    return max(counts.values()) / total if total else 0.0
