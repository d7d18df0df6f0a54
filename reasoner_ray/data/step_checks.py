"""Step checkers: for sources whose questions carry their worked solution, where a scored CoT chain first went
wrong (a misread input, a wrong step, a wrong conclusion; the classes of core/arithmetic_tasks.py).

`step_check(question_id, text, correct)` asks the checker of the source that the question id names (its prefix
before the first '-', e.g. `arithmetic-test-17`); None for a source without one. The reward stage writes the
result in the `step_check` column of every scored CoT chain, and core/diagnosis.py counts it.
"""

from __future__ import annotations

from collections.abc import Callable

from reasoner_ray.data import arithmetic

StepChecker = Callable[[str, str, bool], "str | None"]
CHECKERS: dict[str, StepChecker] = {"arithmetic": arithmetic.check_reply}


def step_check(question_id: str, text: str, correct: bool) -> str | None:
    checker = CHECKERS.get(question_id.partition("-")[0])
    return None if checker is None else checker(question_id, text, correct)
