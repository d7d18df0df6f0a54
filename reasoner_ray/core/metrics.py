"""Evaluation summaries: accuracy per style and answer type, with the standard error of the mean."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


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
    """records: {style, answer_type, value[, tags]} -> {style: {"all": {...}, "<answer_type>": {...},
    "<tag>": {...}}}: every row counts in "all", its answer type's group and each of its tags' groups."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        for group in ("all", r["answer_type"], *(r.get("tags") or ())):
            groups[(r["style"], group)].append(float(r["value"]))
    out: dict[str, dict] = defaultdict(dict)
    for (style, kind), vals in sorted(groups.items()):
        out[style][kind] = accuracy(vals).as_dict()
    return dict(out)


def majority_baseline(answers: Iterable[str]) -> float:
    """Accuracy of always answering the most frequent gold answer."""
    counts: dict[str, int] = defaultdict(int)
    total = 0
    for a in answers:
        counts[a] += 1
        total += 1
    return max(counts.values()) / total if total else 0.0
