"""The child process that runs math-verify, so that a runaway comparison can be killed.

math-verify's own timeout uses SIGALRM, which exists only in a process's main thread; the scorer also runs in
Ray worker threads and server thread pools, and sympy hangs on short inputs (`10^{10^{10}}`), so no input-size
bound makes it safe. Here math-verify runs with its timeouts off in a child process; the parent
(`math_answer.MathVerifier`) waits a bounded time for each reply and kills and replaces the child when it overruns.

Protocol: one JSON object per line. The child first writes {"ready": true}; then, for each request
{"gold": str, "answer": str | null}, it writes {"result": bool}: whether the gold parses into math (answer null)
or whether the answer is equivalent to the gold. Run as `python -m reasoner_ray.core.reward.math_worker`.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from functools import lru_cache
from typing import Any

from math_verify import parse, verify
from sympy import Expr

# math-verify warns that its timeout is off: the parent process is the timeout.
logging.getLogger("math_verify").setLevel(logging.ERROR)

_LATEX_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
# Two constants further apart than this cannot be equal for math-verify, whose loosest test is agreement to 6
# decimal places; evaluated to 30 digits, so evaluation error is far below it.
_CLEARLY_DIFFERENT = 1e-5
_EVAL_DIGITS = 30


@lru_cache(maxsize=4096)
def read(text: str) -> list[Any]:
    """math-verify's parse of a final answer: bare LaTeX or plain math. Wrapped in $...$ it goes through the LaTeX
    parser first ("2\\sqrt{3}" is 2*sqrt(3), not 2), with the plain-expression parser as the fallback."""
    source = text if any(d in text for d in _LATEX_DELIMITERS) else f"${text}$"
    return parse(source, parsing_timeout=None) or parse(text, parsing_timeout=None)


def readable(gold: str) -> bool:
    """Parsed into math, not just kept as the raw string."""
    return any(not isinstance(g, str) for g in read(gold))


def equivalent(gold_text: str, answer_text: str) -> bool:
    gold, answer = read(gold_text), read(answer_text)
    if not gold or not answer:
        return False
    if "%" not in gold_text + answer_text and _clearly_different_constants(gold[0], answer[0]):
        return False
    return verify(gold, answer, timeout_seconds=None)


def _clearly_different_constants(gold: Any, answer: Any) -> bool:
    """A fast reject for two numbers that differ by a lot (wrong answers are the common case, and math-verify
    spends tens of milliseconds in sympy's simplify proving that, e.g., 12 is not 3*sqrt(5)). Percent answers are
    left to math-verify, which reads "9%" as 9."""
    if not (isinstance(gold, Expr) and isinstance(answer, Expr) and gold.is_number and answer.is_number):
        return False
    try:
        difference = abs(complex(gold.evalf(_EVAL_DIGITS)) - complex(answer.evalf(_EVAL_DIGITS)))
    except (TypeError, ValueError, OverflowError):  # not a finite number (oo, zoo, nan) or beyond a float
        return False
    return difference > _CLEARLY_DIFFERENT


def main() -> None:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    equivalent("\\frac{1}{2}", "0.5")  # warm up the LaTeX grammar and sympy before serving
    # Keep the warmed-up objects out of the collector's way: full collections over them showed as latency spikes.
    gc.freeze()
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        answer = request["answer"]
        result = readable(request["gold"]) if answer is None else equivalent(request["gold"], answer)
        protocol.write(json.dumps({"result": result}) + "\n")


if __name__ == "__main__":
    main()
