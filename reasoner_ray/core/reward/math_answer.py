"""`math`: equivalence through math-verify (fractions, decimals, LaTeX, expressions), each call time-bounded.

Three paths, cheapest first, all giving math-verify's verdict:
1. plain numerals on both sides (`12`, `-0.5`, `3/4`, `\\frac{3}{4}`) are compared here as math-verify compares
   numbers (rationals exactly; when a side has a decimal point, both rounded to 6 places), in microseconds;
2. a plain-numeral answer far from a constant gold (`\\sqrt{2}`, its value read once per gold) is rejected here;
3. everything else goes to a math-verify child process (math_worker.py) with a hard wall-clock bound per call
   that holds in any thread; an overrun scores 0 with reason "timeout". Its verdicts are cached.
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
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from reasoner_ray.core.reward.base import TIMEOUT, GoldAnswerError, Score, register

# Per comparison; math-verify's own default. sympy hangs on some short inputs, so a bound is needed, not just fast
# code; a tighter one turned correct answers into timeouts on a loaded machine (typical calls take milliseconds).
# The first call after an overrun also waits for the replacement child to start (~1 s).
MATH_TIMEOUT_S = 5.0
MATH_STARTUP_TIMEOUT_S = 120.0  # importing sympy and the LaTeX grammar, on a loaded machine
FLOAT_ROUNDING = 6  # math-verify's default: decimals agree to 6 places
# Two numbers further apart than this (plus a relative term for float rounding of large values) cannot be equal
# for math-verify, whose loosest test is agreement to FLOAT_ROUNDING places.
CLEARLY_DIFFERENT = 1e-5

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
        reply = self._ask(gold, answer)
        return None if reply is None else bool(reply["result"])

    def read_gold(self, gold: str) -> tuple[bool, float | None] | None:
        """(whether math-verify parses `gold` into math, its value when a finite real constant); None on overrun."""
        reply = self._ask(gold, None)
        return None if reply is None else (bool(reply["result"]), reply["value"])

    def start(self) -> None:
        """Start the child now (it takes about a second) rather than on the first comparison."""
        with self._lock:
            self._running_child()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ask(self, gold: str, answer: str | None) -> dict | None:
        with self._lock:
            child = self._running_child()
            assert child.stdin is not None
            try:
                child.stdin.write(json.dumps({"gold": gold, "answer": answer}) + "\n")
                child.stdin.flush()
                reply = self._read_line(child, self.timeout_s)
            except OSError:  # the child died (e.g. out of memory on a huge number)
                reply = None
            if reply is None:
                self._replace()
            return reply

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
        # Each request gets exactly one reply line, so the read buffer is empty whenever we wait here. poll, not
        # select: a Ray worker can hold more than select's 1024 file descriptors.
        poller = select.poll()
        poller.register(child.stdout, select.POLLIN)
        line = child.stdout.readline() if poller.poll(timeout_s * 1000) else ""  # a dead child reads as ""
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

    def forget_child(self) -> None:
        """In a forked copy of this process: the child (and the lock's state) belong to the parent, so start afresh
        rather than talk over the parent's pipes."""
        self._lock = threading.Lock()
        self._child, self._ready = None, False


VERIFIER = MathVerifier()
atexit.register(VERIFIER.close)
os.register_at_fork(after_in_child=VERIFIER.forget_child)


@lru_cache(maxsize=65536)
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


def clearly_different(a: complex, b: complex) -> bool:
    return abs(a - b) > CLEARLY_DIFFERENT + 1e-9 * max(abs(a), abs(b))


@dataclass(frozen=True, slots=True)
class MathGold:
    text: str
    number: tuple[Fraction, bool] | None  # when the gold is a plain numeral (path 1)
    value: float | None  # when it is a finite real constant (path 2)


@lru_cache(maxsize=65536)
def _verified(gold: str, answer: str) -> bool | None:
    return VERIFIER.equivalent(gold, answer)


@register("math")
class MathAnswer:
    def prepare(self, golds: tuple[str, ...], choices: tuple[str, ...] | None) -> tuple[MathGold, ...]:
        return tuple(self._read(gold) for gold in golds)

    @staticmethod
    def _read(gold: str) -> MathGold:
        number = plain_number(gold)
        if number is not None:
            return MathGold(gold, number, float(number[0]))
        read = VERIFIER.read_gold(gold)
        if read is None or not read[0]:
            raise GoldAnswerError(f"math gold {gold!r} cannot be parsed by math-verify (or timed out)")
        return MathGold(gold, None, read[1])

    def judge(self, answer: str, gold: tuple[MathGold, ...]) -> Score:
        answer_number = plain_number(answer)
        timed_out = False
        for reference in gold:
            equal = self._equal(reference, answer, answer_number)
            if equal:
                return Score(1.0, True, answer)
            timed_out = timed_out or equal is None
        return Score(0.0, False, answer, TIMEOUT if timed_out else None)

    @staticmethod
    def _equal(reference: MathGold, answer: str, answer_number: tuple[Fraction, bool] | None) -> bool | None:
        if answer_number is not None:
            if reference.number is not None:
                return numbers_equal(reference.number, answer_number)
            if reference.value is not None and clearly_different(float(answer_number[0]), reference.value):
                return False
        return _verified(reference.text, answer)
