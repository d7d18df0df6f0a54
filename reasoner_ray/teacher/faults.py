"""Deterministic fault injection for the stand-in teacher.

Two independent draws, each a hash of (seed, request key, ...) mapped to [0, 1):
- transport, per (key, attempt): 429 (with Retry-After), 5xx, a timeout (the server holds the request past
  any sane client timeout), or a bad body (a 200 whose JSON is cut off or of another schema). The attempt is the number of times the server has seen this key, so a retried
  request gets a fresh draw and a rerun of the same test sees the same sequence.
- content, per key only: a malformed completion (no final answer line) or a wrong answer. A request that
  completes always gets the same text, whatever attempt it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class FaultPlan:
    p429: float = 0.0
    p5xx: float = 0.0
    ptimeout: float = 0.0
    pbadbody: float = 0.0
    pmalformed: float = 0.0
    pwrong: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("p429", "p5xx", "ptimeout", "pbadbody", "pmalformed", "pwrong"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.p429 + self.p5xx + self.ptimeout + self.pbadbody > 1.0:
            raise ValueError("p429 + p5xx + ptimeout + pbadbody must not exceed 1")
        if self.pmalformed + self.pwrong > 1.0:
            raise ValueError("pmalformed + pwrong must not exceed 1")

    def transport(self, key: str, attempt: int) -> str | None:
        """'429', '5xx', 'timeout', 'badbody' or None (answer normally)."""
        u = _unit(self.seed, "transport", key, attempt)
        for fault, p in (("429", self.p429), ("5xx", self.p5xx), ("timeout", self.ptimeout), ("badbody", self.pbadbody)):
            if u < p:
                return fault
            u -= p
        return None

    def content(self, key: str) -> str | None:
        """'malformed', 'wrong' or None (a correct rationale)."""
        u = _unit(self.seed, "content", key)
        if u < self.pmalformed:
            return "malformed"
        return "wrong" if u < self.pmalformed + self.pwrong else None
