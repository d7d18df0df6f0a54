"""The teacher's calls: the Ray Data operator that asks the teacher, a callable class for `map_batches` on an actor
pool.

Why not `ray.data.llm`'s HTTP processor: it keeps one request in flight per actor, and a row whose calls keep
failing fails the whole job (see docs/distillation.md). The calls go through `endpoint_calls.EndpointCalls` (an
asyncio loop per actor, a semaphore over the requests in flight, the durable cache). Per row: build the teacher
messages, get the completion (cache or endpoint), then verify. Every input row comes out as exactly one record
(see verify.COLUMNS), verified or rejected with a reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from reasoner_ray.core.prompts import teacher_messages
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.images import ImageError, to_data_url
from reasoner_ray.distill.client import CallSettings
from reasoner_ray.distill.request_key import request_key
from reasoner_ray.distill.verify import COLUMNS, judge_safely, record
from reasoner_ray.operators.endpoint_calls import EndpointCalls


class TeacherCalls(EndpointCalls):
    def __init__(self, settings: CallSettings, cache_dir: str, include_answer: bool, run_token: str = ""):
        super().__init__(settings, cache_dir, run_token)
        self.include_answer = include_answer

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
        return row, request_key(self.settings.cache_model, messages, self.settings.sampling), messages

    def __call__(self, batch) -> dict[str, list[Any]]:
        outputs: list[dict[str, Any] | None] = []
        asked: list[tuple[int, VQARow, str, list[dict[str, Any]]]] = []
        for rec in batch.to_pylist():
            prepared = self._prepare(rec)
            outputs.append(prepared if isinstance(prepared, dict) else None)
            if not isinstance(prepared, dict):
                asked.append((len(outputs) - 1, *prepared))
        answers = self.answers([(key, messages, None) for _, _, key, messages in asked])
        for (slot, row, key, _), (result, cached) in zip(asked, answers):
            outputs[slot] = judge_safely(row, result, key, cached=cached)
        return {col: [out[col] for out in outputs] for col in COLUMNS}  # type: ignore[index]
