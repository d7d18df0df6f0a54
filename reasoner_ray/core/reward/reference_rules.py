"""Two benchmarks' own scorers, for evaluation that must match their published numbers (MathVista's with the
differences docs/evaluation.md lists).

`relaxed` (ChartQA): pix2struct's `relaxed_correctness`, which lmms-eval's ChartQA task uses. Both sides are read
as floats, a trailing `%` dividing by 100; when both are numbers and the gold is not 0, a prediction within 5% of
the gold is right; otherwise (text, or a gold of 0) the lower-cased strings must be equal. Max over the golds.
(The project's own `number` type differs on purpose: it drops a `%` and reads "$1,234" as 1234.)

`mathvista` (MathVista free-form): `evaluation/calculate_score.py`'s normalisation, then string equality. An
integer gold (no decimal point) compares `str(int(float(answer)))` (truncation: 5.7 reads 5); a gold with k
decimals compares `str(round(float(answer), k))` (the official scorer takes k from the record's `precision`;
here it is the gold's number of decimals);
any other gold (text, a list) compares the answer as written. An answer that is not a number where one is
needed is wrong.
"""

from __future__ import annotations

from reasoner_ray.core.reward.base import GoldAnswerError, Score, register

RELAXED_TOLERANCE = 0.05


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(prediction: str, target: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    prediction, target = prediction.strip(), target.strip()
    p, t = _to_float(prediction), _to_float(target)
    if p is not None and t:
        return abs(p - t) / abs(t) <= tolerance
    return prediction.lower() == target.lower()


@register("relaxed")
class RelaxedAnswer:
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[str, ...]:
        return golds

    def judge(self, answer: str, gold: tuple[str, ...]) -> Score:
        right = any(relaxed_correctness(answer, g) for g in gold)
        return Score(1.0 if right else 0.0, right, answer)


def _decimals(gold: str) -> int | None:
    """None when the gold is not a plain number; else its number of decimals (0: an integer)."""
    try:
        float(gold)
    except ValueError:
        return None
    if any(c in gold.lower() for c in ("e", "n", "i")):  # 1e3, nan, inf: not MathVista numbers
        return None
    return len(gold.partition(".")[2]) if "." in gold else 0


def mathvista_normalize(answer: str, decimals: int | None) -> str | None:
    if decimals is None:
        return answer.strip()
    try:
        value = float(answer.strip())
    except ValueError:
        return None
    return str(int(value)) if decimals == 0 else str(round(value, decimals))


@register("mathvista")
class MathVistaAnswer:
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[tuple[str, int | None], ...]:
        prepared = tuple((g.strip(), _decimals(g.strip())) for g in golds)
        if any(not g for g, _ in prepared):
            raise GoldAnswerError("empty MathVista gold")
        return prepared

    def judge(self, answer: str, gold: tuple[tuple[str, int | None], ...]) -> Score:
        right = any(mathvista_normalize(answer, decimals) == text for text, decimals in gold)
        return Score(1.0 if right else 0.0, right, answer)
