"""Whether a chain's own arithmetic holds: every `a op b = c` statement it writes (integers, op + - x * ×)
evaluated as written, with no gold answer and no annotation, as a calculator would.

A chain can reach the right final answer through a false step ("6 x 6 = 48. 48 + 3 = 39" with 39 right by
luck); trained on as a chosen chain, it teaches the false step. `false_equations(text)` counts such statements
(None: the chain writes none, so there is nothing to check), and the pair builder can refuse them as chosen
(pairs.consistent_chosen). Pure.

    false_equations("3 x 7 = 21. 21 + 5 = 26.")   -> 0
    false_equations("6 x 6 = 48. 48 + 3 = 51.")   -> 1
    false_equations("It is a red circle.")         -> None
"""

from __future__ import annotations

import re

_EQUATION = re.compile(r"(?<![\d.])(-?\d+) *([+\-x*×]) *(-?\d+) *= *(-?\d+)(?!\.?\d)")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b, "*": lambda a, b: a * b,
        "×": lambda a, b: a * b}


def false_equations(text: str) -> int | None:
    found = [(int(a), op, int(b), int(c)) for a, op, b, c in _EQUATION.findall(text)]
    if not found:
        return None
    return sum(_OPS[op](a, b) != c for a, op, b, c in found)
