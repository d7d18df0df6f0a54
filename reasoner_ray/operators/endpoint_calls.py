"""Endpoint calls: the base of the Ray Data operators that call an OpenAI-compatible endpoint, callable classes run
by `map_batches` on an actor pool (the teacher's calls, and evaluation against an endpoint).

Each actor runs its own asyncio loop in a background thread; every batch submitted to the actor (several at
once: the pool runs it multi-threaded) puts its calls on that loop, where the caller's semaphore caps the
requests in flight and its buckets apply the rate limits. `answers(jobs)` looks each request up in the durable
response cache, calls the endpoint only on a miss and caches a completion the moment it arrives, so a rerun
re-sends nothing that completed. A call that finally fails comes back as a CallResult with a reason, never raises.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from reasoner_ray.distill.cache import ResponseCache
from reasoner_ray.distill.client import CallResult, CallSettings, TeacherCaller

Messages = list[dict[str, Any]]
Job = tuple[str, Messages, dict[str, Any] | None]  # request key, messages, sampling (None: the settings')


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # about half the CPU per request of the default loop; installed with uvicorn[standard]

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class EndpointCalls:
    def __init__(self, settings: CallSettings, cache_dir: str, run_token: str = ""):
        self.settings = settings
        self.run_token = run_token  # cache entries written by this run's preflight count as fresh calls
        self.cache = ResponseCache(cache_dir)
        self.loop = _new_loop()
        threading.Thread(target=self.loop.run_forever, name="endpoint-calls", daemon=True).start()
        self.caller = self._on_loop(self._make_caller())  # its semaphore and buckets belong to this loop

    def __del__(self) -> None:
        # Ray Data deletes the UDF when the pool shuts down: close the HTTP session, then stop the loop.
        loop, caller = getattr(self, "loop", None), getattr(self, "caller", None)
        if loop is None:
            return
        try:
            if caller is not None:
                asyncio.run_coroutine_threadsafe(caller.close(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        loop.call_soon_threadsafe(loop.stop)

    async def _make_caller(self) -> TeacherCaller:
        return TeacherCaller(self.settings)

    def _on_loop(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _fetch(self, key: str, messages: Messages, sampling: dict[str, Any] | None) -> CallResult:
        result = await self.caller.call(messages, sampling)
        if result.error is None:
            await asyncio.to_thread(self.cache.put, key, result.to_cache(key, self.settings.model))  # fsync off the loop
        return result

    async def _fetch_all(self, jobs: list[Job]) -> list[CallResult]:
        return await asyncio.gather(*(self._fetch(*job) for job in jobs))

    def answers(self, jobs: list[Job]) -> list[tuple[CallResult, bool]]:
        """(result, served from the cache) per job, in order; the misses are sent concurrently."""
        out: list[tuple[CallResult, bool] | None] = []
        pending: list[int] = []
        for key, _, _ in jobs:
            hit = self.cache.get(key)
            if hit is None:
                pending.append(len(out))
                out.append(None)
            else:
                fresh = bool(self.run_token) and hit.get("sent_by_run") == self.run_token
                out.append((CallResult.from_cache(hit), not fresh))
        if pending:
            for slot, result in zip(pending, self._on_loop(self._fetch_all([jobs[i] for i in pending]))):
                out[slot] = (result, False)
        return out  # type: ignore[return-value]
