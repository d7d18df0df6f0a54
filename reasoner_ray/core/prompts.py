"""The paper's instructions (arXiv 2410.16198: distillation and SFT) and the chat messages built from them.

Messages use the OpenAI / transformers chat shape: `{"role": ..., "content": [parts]}` with parts
`{"type": "image"}` (filled by the processor or replaced by an `image_url` part for HTTP) and
`{"type": "text", "text": ...}`. Rendering to token ids goes through the model's own chat template
(`processor.apply_chat_template`), never a hand-written format.
"""

from __future__ import annotations

from typing import Any, Literal

from reasoner_ray.core.reward import ANSWER_MARKER, consensus_answer
from reasoner_ray.core.rows import VQARow

DIRECT_INSTRUCTION = "Answer the question with a short answer."
COT_INSTRUCTION = "Generate a reason first and then output a short answer."
COT_INSTRUCTION_MC = "Generate a reason first and then output a letter."

TEACHER_SYSTEM_PROMPT = (
    "When provided with an image and a question, generate a rationale first and then derive an answer. "
    "Your rationale should include detailed visual elements in order to derive the answer."
)

# Per answer type teacher prompts (paraphrasing the paper's per-dataset prompts). `{question}` and, when the
# config includes the gold answer, `{answer_hint}` are filled in.
_TEACHER_TEMPLATES: dict[str, str] = {
    "multiple_choice": (
        "{question}\nGenerate a rationale first, then derive the answer. The final answer is a letter choice. "
        "End with a final line of the form `### Answer: <letter>`.{answer_hint}"
    ),
    "number": (
        "{question}\nGenerate a rationale first, then derive the answer. The answer is a number with no unit and "
        "no % sign. End with a final line of the form `### Answer: <answer>`.{answer_hint}"
    ),
    "anls": (
        "{question}\nDescribe the visual clues that lead to the answer; do not state the answer first. The answer "
        "is a single word or phrase copied from the image. Conclude with `### Answer: <answer>`.{answer_hint}"
    ),
    "open": (
        "{question}\nGenerate a rationale with the visual details first, then derive a short answer (a single word "
        "or phrase, lower case). End with a final line of the form `### Answer: <answer>`.{answer_hint}"
    ),
    "yes_no": (
        "{question}\nGenerate a rationale with the visual details first, then answer yes or no. End with a final "
        "line of the form `### Answer: <yes or no>`.{answer_hint}"
    ),
    "math": (
        "{question}\nReason step by step, then give the final answer as a number or expression. End with a final "
        "line of the form `### Answer: <answer>`.{answer_hint}"
    ),
}

# The benchmarks' own scorers ask for the same answers as the project's types they refine.
_TEACHER_TEMPLATES["relaxed"] = _TEACHER_TEMPLATES["number"]
_TEACHER_TEMPLATES["mathvista"] = _TEACHER_TEMPLATES["math"]

Style = Literal["cot", "direct"]


def question_text(row: VQARow) -> str:
    """The question with its lettered options, as every prompt shows it."""
    if not row.choices:
        return row.question
    options = "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(row.choices))
    return f"{row.question}\nOptions:\n{options}"


def instruction(style: Style, answer_type: str) -> str:
    if style == "direct":
        return DIRECT_INSTRUCTION
    return COT_INSTRUCTION_MC if answer_type == "multiple_choice" else COT_INSTRUCTION


def user_text(row: VQARow, style: Style) -> str:
    return f"{question_text(row)}\n{instruction(style, row.answer_type)}"


def user_message(text: str, image_part: dict[str, Any] | None = None) -> dict[str, Any]:
    image_part = image_part if image_part is not None else {"type": "image"}
    return {"role": "user", "content": [image_part, {"type": "text", "text": text}]}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def prompt_messages(row: VQARow, style: Style, image_part: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The student's prompt (no system message: the paper's SFT data has none)."""
    return [user_message(user_text(row, style), image_part)]


def teacher_messages(row: VQARow, image_url: str, include_answer: bool) -> list[dict[str, Any]]:
    """OpenAI chat messages asking a teacher for a rationale ending in `### Answer: ...`."""
    hint = ""
    if include_answer:
        hint = f"\nThe correct answer is: {gold_for_response(row)}. Explain how the image leads to it."
    text = _TEACHER_TEMPLATES[row.answer_type].format(question=question_text(row), answer_hint=hint)
    return [
        {"role": "system", "content": TEACHER_SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]},
    ]


def gold_answer(row: VQARow) -> str:
    """The row's one gold answer: the consensus of its human answers (reward.consensus_answer), the rule every
    target, teacher hint and verification uses."""
    return consensus_answer(row.answers, row.answer_type)


def gold_for_response(row: VQARow) -> str:
    """The short answer as the student should write it after `### Answer:` (a letter for multiple choice)."""
    gold = gold_answer(row)
    if row.answer_type == "multiple_choice" and row.choices and gold in row.choices:
        return chr(ord("A") + row.choices.index(gold))
    return gold


def direct_response(row: VQARow) -> str:
    return gold_for_response(row)


def cot_response(rationale: str, answer: str) -> str:
    """A CoT response always ends with exactly one `### Answer:` line."""
    body = rationale.strip()
    return f"{body}\n{ANSWER_MARKER} {answer}".strip()
