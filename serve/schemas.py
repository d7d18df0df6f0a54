"""The OpenAI chat-completions schema the endpoint speaks (the subset it serves), as strict pydantic models.

Requests are parsed with `strict=True`, so `"n": "2"` is a wrong type (400), not silently coerced. Unknown
top-level fields (`user`, `logprobs`, ...) are ignored as OpenAI clients send many; unknown content part types
are refused by the `type` discriminator. Two extra request fields select the paper's prompting:
`reasoning: "cot" | "direct"` appends the paper's instruction to the last user message, and `answer_type`
picks its wording (a letter for multiple choice). Each response choice carries `final_answer`, the text after
`### Answer:` (None when absent), beside the normal message.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageUrl(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImageUrlPart, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2 ** 63), le=2 ** 63 - 1)  # a 64-bit integer, as vLLM's own server takes
    stream: bool = False
    stream_options: StreamOptions | None = None
    reasoning: Literal["cot", "direct"] | None = None
    answer_type: str = "open"

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    final_answer: str | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    reasoning: Literal["cot", "direct"] | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    final_answer: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "reasoner-ray"
    root: str  # the served model name (never the server's folder)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
