"""The child process that runs math-verify, so that a runaway comparison can be killed.

math-verify's own timeout uses SIGALRM, which exists only in a process's main thread; the scorer also runs in
Ray worker threads and server thread pools, and sympy hangs on short inputs (`10^{10^{10}}`), so no input-size
bound makes it safe. Here math-verify runs with its timeouts off in a child process; the parent
(`math_answer.MathVerifier`) waits a bounded time for each reply and kills and replaces the child when it overruns.

Protocol: one JSON object per line. The child first writes {"ready": true}; then, for each request
{"gold": str, "answer": str | null}, it writes {"result": bool, "value": float | null}: with an answer, whether it
is equivalent to the gold; without, whether the gold parses into math and, when it is a finite real constant, its
value (the parent uses it to reject far-off numeric answers without asking). Run as
`python -m reasoner_ray.core.reward.math_worker`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import lru_cache
from typing import Any

from math_verify import parse, verify
from sympy import Expr

from reasoner_ray.core.reward.math_answer import clearly_different

# math-verify warns that its timeout is off: the parent process is the timeout.
logging.getLogger("math_verify").setLevel(logging.ERROR)

_LATEX_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
_EVAL_DIGITS = 30  # evaluation error far below clearly_different's margin


@lru_cache(maxsize=4096)
def read(text: str) -> list[Any]:
    """math-verify's parse of a final answer: bare LaTeX or plain math. Wrapped in $...$ it goes through the LaTeX
    parser first ("2\\sqrt{3}" is 2*sqrt(3), not 2), with the plain-expression parser as the fallback."""
    source = text if any(d in text for d in _LATEX_DELIMITERS) else f"${text}$"
    return parse(source, parsing_timeout=None) or parse(text, parsing_timeout=None)


def readable(gold: str) -> bool:
    """Parsed into math, not just kept as the raw string."""
    return any(not isinstance(g, str) for g in read(gold))


def real_value(text: str) -> float | None:
    """The value of a finite real constant; None for anything else, and for percentages, which math-verify
    compares in its own way ("9%" equals 9)."""
    parsed = read(text)
    if "%" in text or not parsed:
        return None
    value = _value(parsed[0])
    return value.real if value is not None and value.imag == 0 else None


def equivalent(gold_text: str, answer_text: str) -> bool:
    gold, answer = read(gold_text), read(answer_text)
    if not gold or not answer:
        return False
    if "%" not in gold_text + answer_text:
        # A fast reject for two numbers far apart: wrong answers are the common case, and math-verify spends
        # tens of milliseconds in sympy's simplify proving that, e.g., 12 is not 3*sqrt(5).
        gold_value, answer_value = _value(gold[0]), _value(answer[0])
        if gold_value is not None and answer_value is not None and clearly_different(gold_value, answer_value):
            return False
    return verify(gold, answer, timeout_seconds=None)


def _value(expression: Any) -> complex | None:
    if not (isinstance(expression, Expr) and expression.is_number):
        return None
    try:
        return complex(expression.evalf(_EVAL_DIGITS))
    except (TypeError, ValueError, OverflowError):  # not a finite number (oo, zoo, nan) or beyond a float
        return None


def main() -> None:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    equivalent("\\frac{1}{2}", "0.5")  # warm up the LaTeX grammar and sympy before serving
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        gold, answer = request["gold"], request["answer"]
        if answer is None:
            reply = {"result": readable(gold), "value": real_value(gold)}
        else:
            reply = {"result": equivalent(gold, answer), "value": None}
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
