"""`math`: equivalence through math-verify (fractions, decimals, LaTeX, expressions), each call time-bounded.

Plain numerals (`12`, `-0.5`, `3/4`, `\\frac{3}{4}`) on both sides are compared here, exactly as math-verify
compares numbers (rationals exactly; when a side has a decimal point, both rounded to 6 places), in microseconds.
Everything else goes to a math-verify child process (see math_worker.py) with a hard wall-clock bound per call
that holds in any thread; an overrun scores 0 with reason "timeout". Results are cached per (gold, answer).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from reasoner_ray.core.reward.base import TIMEOUT, GoldAnswerError, Score, register

MATH_TIMEOUT_S = 1.0  # per comparison; sympy hangs on some short inputs, so a bound is needed, not just fast code
MATH_STARTUP_TIMEOUT_S = 120.0  # importing sympy and the LaTeX grammar, on a loaded machine
FLOAT_ROUNDING = 6  # math-verify's default: decimals agree to 6 places

# Long digit strings are left to math-verify: int() refuses more than 4300 digits.
_DECIMAL = re.compile(r"^[-+]?(?:\d{1,64}(?:\.\d{0,64})?|\.\d{1,64})$")
_SLASH_FRACTION = re.compile(r"^([-+]?\d{1,64})\s*/\s*(\d{1,64})$")
_LATEX_FRACTION = re.compile(r"^([-+]?)\\[dt]?frac\{(\d{1,64})\}\{(\d{1,64})\}$")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


class MathVerifier:
    """A math-verify child process behind a lock; a call that overruns its bound kills and replaces the child."""

    def __init__(self, timeout_s: float = MATH_TIMEOUT_S, startup_timeout_s: float = MATH_STARTUP_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._child: subprocess.Popen[str] | None = None
        self._ready = False  # whether the child has announced itself

    def equivalent(self, gold: str, answer: str) -> bool | None:
        """Whether `answer` equals `gold`; None when the check overran its bound."""
        return self._ask(gold, answer)

    def readable(self, gold: str) -> bool | None:
        """Whether math-verify can parse `gold`; None when parsing overran its bound."""
        return self._ask(gold, None)

    def start(self) -> None:
        """Start the child now (it takes seconds) rather than on the first comparison."""
        with self._lock:
            self._running_child()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ask(self, gold: str, answer: str | None) -> bool | None:
        with self._lock:
            child = self._running_child()
            assert child.stdin is not None
            try:
                child.stdin.write(json.dumps({"gold": gold, "answer": answer}) + "\n")
                child.stdin.flush()
                reply = self._read_line(child, self.timeout_s)
            except (BrokenPipeError, OSError):
                reply = None
            if reply is None:  # overran, or the child died (e.g. out of memory on a huge number)
                self._replace()
                return None
            return bool(reply["result"])

    def _running_child(self) -> subprocess.Popen[str]:
        if self._child is None or self._child.poll() is not None:
            self._child, self._ready = self._spawn(), False
        if not self._ready:
            if self._read_line(self._child, self.startup_timeout_s) is None:
                self._stop()
                raise RuntimeError("the math-verify worker did not start; see its stderr above")
            self._ready = True
        return self._child

    @staticmethod
    def _spawn() -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
        return subprocess.Popen(
            [sys.executable, "-m", "reasoner_ray.core.reward.math_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    @staticmethod
    def _read_line(child: subprocess.Popen[str], timeout_s: float) -> dict | None:
        assert child.stdout is not None
        # Each request gets exactly one reply line, so the read buffer is empty whenever we wait here.
        ready, _, _ = select.select([child.stdout], [], [], timeout_s)
        line = child.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def _replace(self) -> None:
        """Kill the child and start its successor now, so its start-up overlaps the caller's other work."""
        self._stop()
        self._child, self._ready = self._spawn(), False

    def _stop(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.communicate()  # reaps it and closes its pipes
            self._child = None


VERIFIER = MathVerifier()
atexit.register(VERIFIER.close)


def plain_number(text: str) -> tuple[Fraction, bool] | None:
    """(value, written with a decimal point) for a plain numeral or simple fraction; None for anything else."""
    text = text.strip()
    if _DECIMAL.match(text):
        return Fraction(text), "." in text
    if match := _SLASH_FRACTION.match(text):
        numerator, denominator = int(match.group(1)), int(match.group(2))
    elif match := _LATEX_FRACTION.match(text):
        numerator, denominator = int(match.group(1) + match.group(2)), int(match.group(3))
    else:
        return None
    return (Fraction(numerator, denominator), False) if denominator else None


def numbers_equal(gold: tuple[Fraction, bool], answer: tuple[Fraction, bool]) -> bool:
    (gold_value, gold_decimal), (answer_value, answer_decimal) = gold, answer
    if gold_decimal or answer_decimal:
        return round(gold_value, FLOAT_ROUNDING) == round(answer_value, FLOAT_ROUNDING)
    return gold_value == answer_value


@lru_cache(maxsize=65536)
def _equivalent(gold: str, answer: str) -> bool | None:
    gold_number, answer_number = plain_number(gold), plain_number(answer)
    if gold_number is not None and answer_number is not None:
        return numbers_equal(gold_number, answer_number)
    return VERIFIER.equivalent(gold, answer)


@register("math")
class MathAnswer:
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[str, ...]:
        for gold in golds:
            if plain_number(gold) is None and not VERIFIER.readable(gold):
                raise GoldAnswerError(f"math gold {gold!r} cannot be parsed by math-verify (or timed out)")
        return golds

    def judge(self, answer: str, gold: tuple[str, ...]) -> Score:
        timed_out = False
        for reference in gold:
            equal = _equivalent(reference, answer)
            if equal:
                return Score(1.0, True, answer)
            timed_out = timed_out or equal is None
        return Score(0.0, False, answer, TIMEOUT if timed_out else None)
