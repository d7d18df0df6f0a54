"""Generation through an OpenAI-compatible endpoint as a Ray Data operator: the rows of the vLLM operator
(generation.OUTPUT_COLUMNS, plus `cached` and `error`), so scoring and summaries are the same for both.

The student's own prompt (prompts.prompt_messages, the image as a data URL) is sent once per (question, style,
sample) through `endpoint_calls.EndpointCalls`: concurrency cap, rate limits, retries, and the durable cache, so a rerun
re-sends nothing that completed. Greedy passes send temperature 0; sampled passes send a per-sample seed.
A call that finally fails gives an empty text and its reason in `error` (evaluation leaves it out of the
accuracy and counts it), never a failed job.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reasoner_ray.core.prompts import prompt_messages
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.images import to_data_url
from reasoner_ray.distill.client import CallSettings
from reasoner_ray.distill.request_key import request_key
from reasoner_ray.operators.endpoint_calls import EndpointCalls
from reasoner_ray.operators.generation import OUTPUT_COLUMNS, GenerationPlan

ENDPOINT_COLUMNS = (*OUTPUT_COLUMNS, "cached", "error")


def sample_seed(plan: GenerationPlan, question_id: str, index: int) -> int:
    """A seed per (run seed, round, question, sample): reproducible, and part of the request's cache key."""
    digest = hashlib.sha256(f"{plan.seed}:{plan.round}:{question_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class EndpointGenerationActor(EndpointCalls):
    def __init__(self, settings: CallSettings, cache_dir: str, plan: GenerationPlan):
        super().__init__(settings, cache_dir)
        self.plan = plan

    def _jobs(self, rows: list[VQARow]):
        plan = self.plan
        for row in rows:
            image = {"type": "image_url", "image_url": {"url": to_data_url(row.image)}}
            offset = 0  # sample indices run on across passes, as in the vLLM operator
            for style, temperature, n in plan.passes:
                messages = prompt_messages(row, style, image)
                for i in range(n):
                    sampling = {"temperature": temperature, "max_tokens": plan.max_tokens}
                    if temperature > 0:
                        sampling.update(top_p=plan.top_p, seed=sample_seed(plan, row.id, offset + i))
                    key = request_key(self.settings.cache_model, messages, sampling)
                    yield row, style, temperature, offset + i, (key, messages, sampling)
                offset += n

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = [VQARow.model_validate_json(j) for j in batch["row"]]
        jobs = list(self._jobs(rows))
        out: dict[str, list] = {c: [] for c in ENDPOINT_COLUMNS}
        for (row, style, temperature, index, _), (result, cached) in zip(jobs, self.answers([j[-1] for j in jobs])):
            values = {"question_id": row.id, "style": style, "sample_index": index, "temperature": temperature,
                      "text": result.text or "", "finish_reason": result.finish_reason or "",
                      "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                      "round": self.plan.round, "answer": row.answers, "answer_type": row.answer_type,
                      "choices": row.choices or [], "tags": json.dumps(row.tags), "cached": cached,
                      "error": result.error or ""}
            for column, value in values.items():
                out[column].append(value)
        return out
