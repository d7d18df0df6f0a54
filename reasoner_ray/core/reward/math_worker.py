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

import json
import logging
import os
import sys
from functools import lru_cache
from typing import Any

_LATEX_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")


def main() -> None:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # math-verify warns on every start that its timeout is off: the parent is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import parse, verify

    @lru_cache(maxsize=4096)
    def read(text: str) -> list[Any]:
        # A final answer is bare LaTeX or plain math; wrapped in $...$ it goes through the LaTeX parser first
        # ("2\sqrt{3}" is 2*sqrt(3), not 2), with the plain-expression parser as the fallback.
        source = text if any(d in text for d in _LATEX_DELIMITERS) else f"${text}$"
        return parse(source, parsing_timeout=None) or parse(text, parsing_timeout=None)

    def handle(request: dict[str, Any]) -> bool:
        gold = read(request["gold"])
        if request["answer"] is None:  # readable: parsed into math, not just kept as the raw string
            return any(not isinstance(g, str) for g in gold)
        return bool(gold) and verify(gold, read(request["answer"]), timeout_seconds=None)

    handle({"gold": "\\frac{1}{2}", "answer": "0.5"})  # warm up the LaTeX grammar and sympy before serving
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        protocol.write(json.dumps({"result": handle(json.loads(line))}) + "\n")


if __name__ == "__main__":
    main()
