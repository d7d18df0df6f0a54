"""The scoring operator: score generated rows in batches with the reward, for `Dataset.map_batches` (the rewards,
evaluation, diagnosis and verify stages all score through it).

    ds.map_batches(score_batch, batch_format="numpy")   # or batch_format="pandas"

Rows carry `text` (the sampled chain), optionally `style` ("direct" replies are scored whole), and the question's
`answer` (str or list of human answers), `answer_type` and optional `choices`. It adds `parsed`, `value`,
`correct`, `reason` and `step_check` (where a CoT chain first went wrong, for sources with a step checker:
reasoner_ray/data/step_checks.py; else ""), keeping every other column. A row whose gold cannot be read is not
rewarded: value 0, correct False, reason "gold_error" (the pair builder drops its question), so one bad row does
not fail a whole scoring job. No Ray import: this is a plain function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reasoner_ray.core.reward import (
    GOLD_ERROR,
    GoldAnswerError,
    Score,
    extract_final_answer,
    score,
)
from reasoner_ray.data.step_checks import step_check


def score_batch(batch: Any) -> Any:
    """Score a numpy batch (dict of columns) or a pandas DataFrame; returns the same kind with the reward columns."""
    texts = batch["text"]
    choices = batch.get("choices")
    styles = batch.get("style")  # evaluation rows: "direct" replies are scored whole (no `### Answer:` line)
    rows = zip(texts, batch["answer"], batch["answer_type"], [None] * len(texts) if choices is None else choices,
               [False] * len(texts) if styles is None else [s == "direct" for s in styles])
    scores = [_score_row(*row) for row in rows]
    direct = [False] * len(texts) if styles is None else [s == "direct" for s in styles]
    ids = batch.get("question_id")
    # "" where no checker applies (never None: a batch of only unchecked rows would get Arrow's null type, and the
    # files of one folder would disagree)
    checks = ["" if d or q is None else step_check(str(q), str(t), s.correct) or ""
              for q, t, s, d in zip([None] * len(texts) if ids is None else ids, texts, scores, direct)]
    columns = {
        "parsed": np.array([s.parsed for s in scores], dtype=object),
        "value": np.array([s.value for s in scores], dtype=np.float64),
        "correct": np.array([s.correct for s in scores], dtype=bool),
        "reason": np.array([s.reason for s in scores], dtype=object),
        "step_check": np.array(checks, dtype=object),
    }
    if isinstance(batch, Mapping):
        return {**batch, **columns}
    return batch.assign(**columns)  # a pandas DataFrame


def _score_row(text: Any, gold: Any, answer_type: Any, choices: Any, direct: bool) -> Score:
    text = str(text)
    try:
        return score(text, _gold(gold), str(answer_type), _choices(choices), direct=direct)
    except GoldAnswerError:
        return Score(0.0, False, extract_final_answer(text), GOLD_ERROR)


def _gold(values: Any) -> list[str] | Any:
    """A list of human answers arrives as a numpy array (numpy batches) or a list; a single answer (str) passes
    through, and so does anything else, for score() to reject."""
    if isinstance(values, (np.ndarray, list, tuple)):
        return [str(v) for v in values]
    return values


def _choices(values: Any) -> list[str] | None:
    if isinstance(values, (np.ndarray, list, tuple)) and len(values):
        return [str(v) for v in values]
    return None  # missing: None, NaN from pandas, or an empty list
