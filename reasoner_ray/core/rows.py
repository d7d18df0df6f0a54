"""Row types that travel through every stage, one schema end to end.

Rows cross process boundaries (Ray Data blocks, JSONL/Parquet files), so each type is a pydantic model with a
`to_record()` / `from_record()` pair that maps to plain JSON-able dicts. Images are carried by reference
(`ImageRef`: a path, raw bytes, or a data URL) and decoded only where pixels are needed.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

# Answer types understood by the reward registry (reasoner_ray.core.reward). Kept here as the single list the
# data readers validate against, so a row with an unknown type is rejected when read, not when scored.
ANSWER_TYPES = ("multiple_choice", "yes_no", "number", "open", "anls", "math", "relaxed", "mathvista")


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)

    def to_record(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    @classmethod
    def from_record(cls, record: dict[str, Any]):
        return cls.model_validate(record)


class ImageRef(_Row):
    """Exactly one of path / data (raw encoded bytes, e.g. PNG) / url (a data: URL)."""

    # Raw bytes travel as base64 in JSON (JSONL files, Ray Data string columns).
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    path: str | None = None
    data: bytes | None = None
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _only_data_urls(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("data:"):
            raise ValueError("image url must be a data: URL (remote and file URLs are never fetched)")
        return v

    def model_post_init(self, _ctx: Any) -> None:
        given = [k for k in ("path", "data", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"ImageRef needs exactly one of path/data/url, got {given or 'none'}")


class VQARow(_Row):
    """One short-answer visual question. `answer` is a list when several humans answered (VQA, TextVQA)."""

    id: str
    image: ImageRef
    question: str
    answer: str | list[str]
    answer_type: Literal["multiple_choice", "yes_no", "number", "open", "anls", "math", "relaxed", "mathvista"]
    choices: list[str] | None = None
    source: str
    rationale: str | None = None
    # Groups the evaluation also reports on their own (e.g. digits: "multi_step", "kind:sum").
    tags: list[str] = Field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def answers(self) -> list[str]:
        return list(self.answer) if isinstance(self.answer, list) else [self.answer]


class RolloutRow(_Row):
    """One sampled reasoning chain for one question (output of the rollout stage)."""

    question_id: str
    sample_index: int
    temperature: float
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    round: int = 0
    # Filled by the reward stage.
    parsed: str | None = None
    value: float | None = None
    correct: bool | None = None
    reason: str | None = None


def prompt_digest(token_ids) -> str:
    """A short hash of a prompt's token ids (image tokens included): what an engine and a trainer compare to know
    they rendered the same prompt."""
    return hashlib.sha256(",".join(str(int(t)) for t in token_ids).encode()).hexdigest()[:16]


class SampledTokens(_Row):
    """The tokens a rollout engine sampled for a chain and each one's log-prob under the sampling model
    (unscaled by temperature or top-p): the reference log-probs when that model is the DPO reference."""

    token_ids: list[int]
    logprobs: list[float]
    prompt_tokens: int | None = None  # the prompt's length in the engine, to check the trainer renders the same
    prompt_digest: str | None = None  # prompt_digest() of the engine's prompt token ids: the same check, exact

    def model_post_init(self, _ctx: Any) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(f"{len(self.token_ids)} token ids but {len(self.logprobs)} log-probs")


class PreferenceRow(_Row):
    """A (chosen, rejected) pair of chains for one prompt; the DPO stage's input."""

    question_id: str
    question: str
    image: ImageRef
    messages: list[dict[str, Any]] = Field(default_factory=list)  # the prompt as chat messages (no answer)
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    # Cut by pairs.truncate_words: trained on without an end of turn after the text (the chain went on).
    chosen_truncated: bool = False
    rejected_truncated: bool = False
    round: int = 0
    sampling: dict[str, Any] = Field(default_factory=dict)
    # What the rollout engine sampled for each chain (None for rows built elsewhere, e.g. older runs).
    chosen_sampled: SampledTokens | None = None
    rejected_sampled: SampledTokens | None = None
    # Sum of reference-model token log-probs of each response given the prompt (filled once per round).
    ref_chosen_logp: float | None = None
    ref_rejected_logp: float | None = None
    schema_version: int = SCHEMA_VERSION


class RejectedRow(_Row):
    """An input row that did not make it to the output, and why. Every input ends in output or here."""

    id: str
    step: str  # where it was turned away: read, teacher, verify
    reason: str
    detail: str = ""
