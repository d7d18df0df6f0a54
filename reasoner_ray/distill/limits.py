"""An asyncio token bucket: requests-per-minute and tokens-per-minute limits for teacher calls.

`await bucket.take(amount)` waits until `amount` units are available. The bucket holds at most one second's
worth of units (or the single largest request), so a burst after an idle spell stays near the target rate.
Each actor holds its share of the global limit (the limit divided by the number of actors).
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, per_minute: float):
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be positive, got {per_minute} per minute")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self, limit: float) -> None:
        now = time.monotonic()
        self.level = min(limit, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, amount: float = 1.0) -> None:
        limit = max(self.capacity, amount)  # one request larger than a second's budget still passes, slowly
        async with self._lock:  # first come, first served: waiters queue on the lock
            self._refill(limit)
            while self.level < amount:
                await asyncio.sleep((amount - self.level) / self.rate)
                self._refill(limit)
            self.level -= amount


class NoLimit:
    async def take(self, amount: float = 1.0) -> None:
        return None


def bucket(per_minute: float | None, share: int = 1) -> TokenBucket | NoLimit:
    return NoLimit() if per_minute is None else TokenBucket(per_minute / share)
