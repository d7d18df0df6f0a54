"""vLLM `RequestOutput`s -> OpenAI chat completion bodies (one JSON object, or server-sent event chunks).

Each choice also gets `final_answer`: the reply's final answer by reasoner_ray.core.reward's extraction (the same one
the training reward uses), None when the reply has none.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from reasoner_ray.core.reward import extract_final_answer
from serve.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
)


def completion_body(output: Any, *, request_id: str, created: int, model: str, reasoning: str | None) -> ChatCompletion:
    choices = [
        Choice(index=o.index, message=AssistantMessage(content=o.text), finish_reason=o.finish_reason,
               final_answer=extract_final_answer(o.text))
        for o in sorted(output.outputs, key=lambda o: o.index)
    ]
    prompt_tokens = len(output.prompt_token_ids or ())
    completion_tokens = sum(len(o.token_ids) for o in output.outputs)
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                  total_tokens=prompt_tokens + completion_tokens)
    return ChatCompletion(id=request_id, created=created, model=model, choices=choices, usage=usage,
                          reasoning=reasoning)


def sse(payload: ChatCompletionChunk | str) -> bytes:
    if isinstance(payload, str):
        return f"data: {payload}\n\n".encode()
    if not any(c.finish_reason is not None and c.final_answer is None for c in payload.choices):
        return f"data: {payload.model_dump_json(exclude_none=True)}\n\n".encode()  # every token's chunk
    body = payload.model_dump(mode="json", exclude_none=True)
    for choice in body["choices"]:  # a choice's last chunk says `final_answer` even when there is none (null)
        if choice.get("finish_reason") is not None:
            choice.setdefault("final_answer", None)
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


class StreamState:
    """Accumulates per-choice text (for `final_answer`) and token counts while deltas stream out."""

    def __init__(self, n: int):
        self.texts = [""] * n
        self.prompt_tokens = 0
        self.completion_tokens = 0


async def stream_events(first: Any, rest: AsyncIterator[Any], *, n: int, request_id: str, created: int,
                        model: str, include_usage: bool, on_done) -> AsyncIterator[bytes]:
    """SSE chunks: a role chunk per choice, content deltas, a final chunk per choice with finish_reason and
    final_answer, an optional usage chunk, then `[DONE]`. `on_done(prompt_tokens, completion_tokens)` runs at
    the end (metrics)."""
    state = StreamState(n)

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
        return sse(ChatCompletionChunk(id=request_id, created=created, model=model, choices=choices, usage=usage))

    yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content="")) for i in range(n)])
    output = first
    while output is not None:
        state.prompt_tokens = state.prompt_tokens or len(output.prompt_token_ids or ())
        for o in output.outputs:
            state.texts[o.index] += o.text
            state.completion_tokens += len(o.token_ids)
            choice = ChunkChoice(index=o.index, delta=Delta(content=o.text), finish_reason=o.finish_reason)
            if o.finish_reason is not None:
                choice.final_answer = extract_final_answer(state.texts[o.index])
            if o.text or o.finish_reason is not None:
                yield chunk([choice])
        output = await anext(rest, None)
    if include_usage:
        yield chunk([], Usage(prompt_tokens=state.prompt_tokens, completion_tokens=state.completion_tokens,
                              total_tokens=state.prompt_tokens + state.completion_tokens))
    on_done(state.prompt_tokens, state.completion_tokens)
    yield sse("[DONE]")
