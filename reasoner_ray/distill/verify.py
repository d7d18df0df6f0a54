"""Turn one row plus its teacher completion into the stage's output record: verified (with SFT conversations)
or rejected with a reason. Pure apart from the reward module; no Ray, no network.

A verified row yields the row itself with its `rationale` filled, a CoT conversation (rationale, then
`### Answer: <gold>`) and a direct conversation (the short answer), as the paper's SFT mixture. The final answer
is checked with `reasoner_ray.core.reward.score`, the same rule the rollout rewards use, against the one gold the
targets write (`prompts.gold_answer`, the consensus of several human answers), so a rationale never concludes
one answer above a `### Answer:` line that gives another.
"""

from __future__ import annotations

import json
from typing import Any

from reasoner_ray.core.prompts import (
    ANSWER_MARKER,
    cot_response,
    direct_response,
    gold_answer,
    gold_for_response,
    user_text,
)
from reasoner_ray.core.reward import GoldAnswerError, score
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.images import to_data_url
from reasoner_ray.data.llava import to_llava_record
from reasoner_ray.distill.client import CallResult

# Every output record has exactly these columns, so Arrow blocks of verified and rejected rows share a schema.
COLUMNS = ("id", "status", "step", "reason", "detail", "source", "row", "cot", "direct", "key", "attempts", "cached",
           "prompt_tokens", "completion_tokens")


def record(row_id: str, status: str, step: str, reason: str = "", detail: str = "", **fields: Any) -> dict[str, Any]:
    """`step`: where a rejected row was turned away (read, teacher, verify)."""
    out = {"id": row_id, "status": status, "step": step, "reason": reason, "detail": detail, "source": "", "row": "",
           "cot": "", "direct": "", "key": "", "attempts": 0, "cached": False, "prompt_tokens": 0, "completion_tokens": 0}
    out.update(fields)
    return out


def image_field(row: VQARow) -> str:
    """What the LLaVA record's `image` holds: the path when there is one, else a data URL of the bytes."""
    return row.image.path if row.image.path else to_data_url(row.image)


def sft_records(row: VQARow, rationale: str) -> tuple[dict[str, Any], dict[str, Any]]:
    extra = {"answer_type": row.answer_type, "source": row.source, "choices": row.choices}
    image = image_field(row)
    cot = to_llava_record(row.id, image, user_text(row, "cot"), cot_response(rationale, gold_for_response(row)), **extra)
    direct = to_llava_record(row.id, image, user_text(row, "direct"), direct_response(row), **extra)
    return cot, direct


def judge(row: VQARow, call: CallResult, key: str, cached: bool) -> dict[str, Any]:
    common = {"source": row.source, "key": key, "attempts": call.attempts, "cached": cached,
              "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens}
    if call.error:
        return record(row.id, "rejected", "teacher", call.error, call.detail, **common)
    text = (call.text or "").strip()
    if not text:
        return record(row.id, "rejected", "teacher", "teacher_empty_response", f"finish_reason={call.finish_reason}", **common)
    try:
        gold = gold_answer(row)
        verdict = score(text, gold, row.answer_type, row.choices)
    except GoldAnswerError as err:
        return record(row.id, "rejected", "verify", "bad_gold", str(err), **common)
    if not verdict.correct:
        reason = verdict.reason or "wrong_answer"
        detail = f"teacher answered {verdict.parsed!r}, gold {gold!r}; tail: {text[-120:]!r}"
        return record(row.id, "rejected", "verify", reason, detail, **common)
    rationale = text.rpartition(ANSWER_MARKER)[0].strip()
    if not rationale:
        return record(row.id, "rejected", "verify", "no_rationale", "the completion holds only the answer", **common)
    verified = row.model_copy(update={"rationale": rationale})
    cot, direct = sft_records(row, rationale)
    return record(row.id, "verified", "verify", row=verified.model_dump_json(), cot=json.dumps(cot),
                  direct=json.dumps(direct), **common)


def judge_safely(row: VQARow, call: CallResult, key: str, cached: bool) -> dict[str, Any]:
    """`judge`, with any unexpected error recorded on the row instead of failing the batch (and the job)."""
    try:
        return judge(row, call, key, cached)
    except Exception as err:  # noqa: BLE001
        return record(row.id, "rejected", "verify", "verify_error", f"{type(err).__name__}: {err}"[:300],
                      source=row.source, key=key, attempts=call.attempts, cached=cached)
