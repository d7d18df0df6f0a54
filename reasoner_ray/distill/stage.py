"""The Ray Data stage that asks the teacher: a callable class for `map_batches` on an actor pool.

Why not `ray.data.llm`'s HTTP processor: it keeps one request in flight per actor, and a row whose calls keep
failing fails the whole job (see README.md (Distillation)). Here each actor runs its own asyncio loop in a background
thread; every batch submitted to the actor (several at once: the pool runs it multi-threaded) puts its rows on
that loop, where a shared semaphore caps the requests in flight. Per row: build the teacher messages, look up
the durable cache, call the endpoint only on a miss, cache the completion the moment it arrives, then verify.
Every input row comes out as exactly one record (see verify.COLUMNS), verified or rejected with a reason.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pydantic import ValidationError

from reasoner_ray.core.prompts import teacher_messages
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.images import ImageError, to_data_url
from reasoner_ray.distill.cache import ResponseCache
from reasoner_ray.distill.client import CallResult, CallSettings, TeacherCaller
from reasoner_ray.distill.request_key import request_key
from reasoner_ray.distill.verify import COLUMNS, judge_safely, record


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # about half the CPU per request of the default loop; installed with uvicorn[standard]

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class TeacherStage:
    def __init__(self, settings: CallSettings, cache_dir: str, include_answer: bool, run_token: str = ""):
        self.settings, self.include_answer = settings, include_answer
        self.run_token = run_token  # cache entries this run's preflight wrote count as fresh calls, not cache hits
        self.cache = ResponseCache(cache_dir)
        self.loop = _new_loop()
        threading.Thread(target=self.loop.run_forever, name="teacher-calls", daemon=True).start()
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

    async def _fetch(self, key: str, messages: list[dict[str, Any]]) -> CallResult:
        result = await self.caller.call(messages)
        if result.error is None:
            await asyncio.to_thread(self.cache.put, key, result.to_cache(key, self.settings.model))  # fsync off the loop
        return result

    async def _fetch_all(self, jobs: list[tuple[str, list[dict[str, Any]]]]) -> list[CallResult]:
        return await asyncio.gather(*(self._fetch(key, messages) for key, messages in jobs))

    def _prepare(self, rec: dict[str, Any]) -> tuple[VQARow, str, list[dict[str, Any]]] | dict[str, Any]:
        if rec.get("reject_reason"):
            return record(rec["id"], "rejected", "read", rec["reject_reason"], rec.get("detail") or "")
        try:
            row = VQARow.model_validate_json(rec["row"])
            url = to_data_url(row.image)
        except ValidationError as err:
            return record(rec["id"], "rejected", "read", "malformed_row", str(err)[:300])
        except ImageError as err:
            return record(row.id, "rejected", "read", err.reason, err.detail, source=row.source)
        messages = teacher_messages(row, url, self.include_answer)
        return row, request_key(self.settings.model, messages, self.settings.sampling), messages

    def __call__(self, batch) -> dict[str, list[Any]]:
        outputs: list[dict[str, Any] | None] = []
        pending: list[tuple[int, VQARow, str, list[dict[str, Any]]]] = []
        for rec in batch.to_pylist():
            prepared = self._prepare(rec)
            if isinstance(prepared, dict):
                outputs.append(prepared)
                continue
            row, key, messages = prepared
            hit = self.cache.get(key)
            if hit is not None:
                fresh = bool(self.run_token) and hit.get("sent_by_run") == self.run_token
                outputs.append(judge_safely(row, CallResult.from_cache(hit), key, cached=not fresh))
            else:
                outputs.append(None)
                pending.append((len(outputs) - 1, row, key, messages))
        if pending:
            results = self._on_loop(self._fetch_all([(key, messages) for _, _, key, messages in pending]))
            for (slot, row, key, _), result in zip(pending, results):
                outputs[slot] = judge_safely(row, result, key, cached=False)
        return {col: [out[col] for out in outputs] for col in COLUMNS}  # type: ignore[index]
