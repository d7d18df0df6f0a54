"""Teacher calls: the `openai` async client with retries, a per-call timeout, a concurrency cap and rate limits.

The client is built with `max_retries=0` so tenacity alone decides: exponential backoff with jitter on 429,
5xx, timeouts, connection errors and 200s whose body is not a chat completion (cut off, another schema), never
shorter than the server's Retry-After. The concurrency semaphore is
held only while a request is on the wire (not while backing off). A call that finally fails returns a
`CallResult` with a reason tag instead of raising, so one bad row never fails the job.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from reasoner_ray.core.config import EndpointConfig
from reasoner_ray.distill.limits import bucket

# Exception class -> the reason a row is rejected with when its calls finally fail. First match wins, so
# subclasses come before their bases (APITimeoutError is an APIConnectionError).
FAILURE_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (openai.APITimeoutError, "teacher_timeout"),
    (TimeoutError, "teacher_timeout"),
    (openai.APIConnectionError, "teacher_connection_error"),
    (openai.RateLimitError, "teacher_rate_limited"),
    (openai.InternalServerError, "teacher_server_error"),
    (openai.APIStatusError, "teacher_request_refused"),  # 4xx other than 429: retrying cannot help
)
RETRYABLE_STATUS = {408, 409, 429}
DUMMY_API_KEY = "no-key"  # local servers (the stand-in teacher, vLLM) accept any key
# Reasons that say the request never got a usable answer (the teacher or the network failed, not the row): rows
# rejected for these are not cached, and a rerun sends them again (distill.max_failed_fraction bounds them).
TRANSPORT_REASONS = frozenset({"teacher_timeout", "teacher_connection_error", "teacher_rate_limited",
                               "teacher_server_error", "teacher_bad_response"})


@dataclass
class CallSettings:
    base_url: str
    model: str
    api_key: str = field(repr=False)  # never in a log line, even when the settings are printed
    sampling: dict[str, Any]
    timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    concurrency: int
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    revision: str = ""  # EndpointConfig.revision

    @property
    def cache_model(self) -> str:
        """The model as the response cache keys it: its name, and its revision when one is given."""
        return f"{self.model}@{self.revision}" if self.revision else self.model


def endpoint_settings(endpoint: EndpointConfig, sampling: dict[str, Any], actors: int) -> CallSettings:
    """CallSettings for one of `actors` actors calling `endpoint`: the concurrency and rate limits are split
    evenly; the key is read from the environment variable the config names (a dummy key when it is unset)."""
    share = lambda limit: None if limit is None else limit / actors  # noqa: E731 - each actor its part
    return CallSettings(
        base_url=endpoint.base_url, model=endpoint.model, api_key=os.environ.get(endpoint.api_key_env) or DUMMY_API_KEY,
        sampling=sampling, timeout_s=endpoint.timeout_s, max_retries=endpoint.max_retries,
        backoff_base_s=endpoint.backoff_base_s, backoff_max_s=endpoint.backoff_max_s,
        concurrency=math.ceil(endpoint.concurrency / actors), requests_per_minute=share(endpoint.requests_per_minute),
        tokens_per_minute=share(endpoint.tokens_per_minute), revision=endpoint.revision,
    )


@dataclass
class CallResult:
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    error: str | None = None  # reason tag when the call finally failed
    detail: str = ""
    status: int | None = None  # HTTP status of the final failure, when the server answered

    def to_cache(self, key: str, model: str) -> dict[str, Any]:
        """The response cache's record of a successful call."""
        return {"key": key, "model": model, "text": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    @classmethod
    def from_cache(cls, hit: dict[str, Any]) -> "CallResult":
        return cls(text=hit.get("text"), finish_reason=hit.get("finish_reason"),
                   prompt_tokens=hit.get("prompt_tokens", 0), completion_tokens=hit.get("completion_tokens", 0))


class BadResponse(ValueError):
    """A 200 whose body is not a chat completion (another schema, no choices): retried like a 5xx."""


def checked_completion(response: Any) -> Any:
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices or getattr(choices[0], "message", None) is None:
        raise BadResponse("the reply is not a chat completion (no choices[0].message)")
    return response


def is_retryable(exc: BaseException) -> bool:
    # A body cut off or of another schema is a transport fault (a proxy, an overloaded server), not the row's.
    if isinstance(exc, (openai.APIConnectionError, TimeoutError, openai.InternalServerError, BadResponse,
                        json.JSONDecodeError, openai.APIResponseValidationError)):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code in RETRYABLE_STATUS


def retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, or `Retry-After` as seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _refusal(exc: BaseException) -> BaseException | None:
    """The refused or unresolvable connection in the chain, if any. The aiohttp transport reports a refused port
    as `httpx.ConnectTimeout`, which openai turns into APITimeoutError; the OS error under it says which."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, socket.gaierror)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def failure_reason(exc: BaseException) -> str:
    if _refusal(exc) is not None:
        return "teacher_connection_error"
    return next((reason for cls, reason in FAILURE_REASONS if isinstance(exc, cls)), "teacher_bad_response")


def failure_detail(exc: BaseException) -> str:
    shown = _refusal(exc) or exc
    return f"{type(shown).__name__}: {' '.join(str(shown).split())[:300]}"  # one line, even for a raw HTTP/2 reply


def estimate_tokens(messages: list[dict[str, Any]], max_tokens: int) -> int:
    """Rough token cost of a request for the tokens-per-minute limit: 4 characters a token, 85 per image."""
    chars, images = 0, 0
    for msg in messages:
        parts = msg["content"] if isinstance(msg["content"], list) else [{"type": "text", "text": msg["content"]}]
        for part in parts:
            if part.get("type") == "text":
                chars += len(part.get("text", ""))
            else:
                images += 1
    return chars // 4 + 85 * images + max_tokens


class TeacherCaller:
    """One per actor; all methods run on that actor's event loop."""

    def __init__(self, settings: CallSettings):
        self.settings = settings
        # The aiohttp transport: httpx's own connection pool spends CPU quadratic in its size (64+ connections
        # cost ~10 ms of CPU per request on a 2-core node, the whole budget at 128 requests/s).
        self.client = openai.AsyncOpenAI(
            base_url=settings.base_url, api_key=settings.api_key, max_retries=0, timeout=settings.timeout_s,
            http_client=openai.DefaultAioHttpClient(timeout=settings.timeout_s),
        )
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.requests = bucket(settings.requests_per_minute)
        self.tokens = bucket(settings.tokens_per_minute)
        self.backoff = wait_exponential_jitter(multiplier=settings.backoff_base_s, max=settings.backoff_max_s,
                                               jitter=settings.backoff_base_s)

    def _wait(self, state: RetryCallState) -> float:
        backoff = self.backoff(state)
        asked = retry_after_s(state.outcome.exception() if state.outcome else None)
        return backoff if asked is None else max(asked, backoff)

    async def _once(self, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> Any:
        s = self.settings
        await self.requests.take(1)
        await self.tokens.take(estimate_tokens(messages, int(sampling.get("max_tokens", 0))))
        async with self.slots:
            # wait_for bounds the whole call; the client's own timeout only bounds each network read.
            # `post` sends the body as is: the messages are already wire-format JSON, and the typed `create()`
            # would re-walk every message part (1.5 ms of CPU per request, half of the client's cost here).
            body = {"model": s.model, "messages": messages, **sampling}
            response = await asyncio.wait_for(self.client.post("/chat/completions", cast_to=ChatCompletion, body=body),
                                              s.timeout_s)
            return checked_completion(response)

    async def call(self, messages: list[dict[str, Any]], sampling: dict[str, Any] | None = None) -> CallResult:
        """One chat completion with the settings' sampling, or `sampling` for this call."""
        sampling = self.settings.sampling if sampling is None else sampling
        result = CallResult()
        retrying = AsyncRetrying(stop=stop_after_attempt(self.settings.max_retries + 1), wait=self._wait,
                                 retry=retry_if_exception(is_retryable), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    result.attempts += 1
                    response = await self._once(messages, sampling)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded reason, never a crash
            result.error, result.detail = failure_reason(exc), failure_detail(exc)
            result.status = getattr(exc, "status_code", None)
            return result
        choice = response.choices[0] if response.choices else None
        result.text = choice.message.content if choice is not None else None
        result.finish_reason = choice.finish_reason if choice is not None else None
        if response.usage is not None:
            result.prompt_tokens = response.usage.prompt_tokens or 0
            result.completion_tokens = response.usage.completion_tokens or 0
        return result

    async def close(self) -> None:
        await self.client.close()
