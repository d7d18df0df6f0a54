"""The LLaVA `conversations` JSONL layout of the paper's released data, read and written.

A record: {"id", "image": "<relative path>", "conversations": [{"from": "human", "value": "<image>\\n<question>
\\n<instruction>"}, {"from": "gpt", "value": "<rationale>\\n### Answer: <answer>"}]}. The instruction tells
CoT from direct; a CoT answer is split into rationale and short answer at the last `### Answer:`.
"""

from __future__ import annotations

from typing import Any

from reasoner_ray.core.prompts import (
    ANSWER_MARKER,
    COT_INSTRUCTION,
    COT_INSTRUCTION_MC,
    DIRECT_INSTRUCTION,
)

IMAGE_TOKEN = "<image>"
_INSTRUCTIONS = (COT_INSTRUCTION_MC, COT_INSTRUCTION, DIRECT_INSTRUCTION)


def llava_record_to_raw(rec: dict[str, Any], default_answer_type: str, fallback_id: str) -> dict[str, Any]:
    row_id = str(rec.get("id") or fallback_id)
    turns = rec.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, dict) for t in turns[:2]):
        return {"id": row_id, "_malformed": "conversations must hold a human turn and a gpt turn"}
    human, gpt = str(turns[0].get("value", "")), str(turns[1].get("value", ""))
    question = human.replace(IMAGE_TOKEN, "").strip()
    for inst in _INSTRUCTIONS:
        if question.endswith(inst):
            question = question[: -len(inst)].strip()
            break
    rationale = None
    answer = gpt.strip()
    if ANSWER_MARKER in gpt:
        head, _, tail = gpt.rpartition(ANSWER_MARKER)
        rationale, answer = head.strip() or None, tail.strip()
    return {
        "id": row_id,
        "image": rec.get("image") or "",
        "question": question,
        "answer": answer,
        "answer_type": rec.get("answer_type") or default_answer_type,
        "choices": rec.get("choices"),
        "source": rec.get("source") or "llava",
        "rationale": rationale,
    }


def to_llava_record(row_id: str, image: str, user_text: str, response: str, **extra: Any) -> dict[str, Any]:
    """One conversation in the released layout; `extra` keeps fields (answer_type, source) for reading back."""
    return {
        "id": row_id,
        "image": image,
        "conversations": [
            {"from": "human", "value": f"{IMAGE_TOKEN}\n{user_text}"},
            {"from": "gpt", "value": response},
        ],
        **extra,
    }
