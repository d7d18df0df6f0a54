"""One real request to the teacher before any row is streamed: the endpoint answers, the key is accepted, the
model is served and takes an image. A failure becomes a PreflightError naming the setting to fix.

The request is a training row's own request (same key), and its answer goes into the response cache, so the check
costs nothing when the teacher works. It gets 3 retries whatever teacher.max_retries says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os

from reasoner_ray.core.config import Config
from reasoner_ray.core.errors import PreflightError
from reasoner_ray.core.prompts import teacher_messages
from reasoner_ray.data.images import to_data_url
from reasoner_ray.data.readers import iter_checked
from reasoner_ray.distill.cache import ResponseCache
from reasoner_ray.distill.client import CallResult, CallSettings, TeacherCaller
from reasoner_ray.distill.request_key import request_key

log = logging.getLogger(__name__)

PROBE_RETRIES = 3
PROBE_SCAN = 256  # rows looked at for one whose answer is not cached yet


def _advice(config: Config, result: CallResult) -> str:
    """What went wrong and which setting fixes it, by failure reason (and HTTP status for refusals)."""
    t = config.teacher
    where = f"the teacher at teacher.base_url={t.base_url}"
    if result.error == "teacher_connection_error":
        return f"{where} cannot be reached ({result.detail}): start it, or fix teacher.base_url"
    if result.error == "teacher_timeout":
        return (f"{where} did not answer within teacher.timeout_s={t.timeout_s:g} s ({PROBE_RETRIES + 1} tries): "
                f"check the server, or raise teacher.timeout_s")
    if result.error == "teacher_rate_limited":
        return f"{where} answered 429 (rate limited) to a single request: check the account's quota"
    if result.error == "teacher_server_error":
        return f"{where} answered with a server error ({result.detail}): try again when it is healthy"
    if result.error == "teacher_bad_response":
        return f"{where} sent a reply that is not a chat completion ({result.detail}): is it an OpenAI-compatible /v1 URL?"
    if result.status in (401, 403):
        unset = "" if os.environ.get(t.api_key_env) else " (it is not set)"
        return (f"{where} refused the API key (HTTP {result.status}): put the key in the environment variable "
                f"named by teacher.api_key_env, {t.api_key_env}{unset}")
    if result.status == 404:
        return f"{where} does not serve teacher.model={t.model!r} ({result.detail}): set teacher.model to a model it serves"
    if result.error == "teacher_request_refused":
        return (f"{where} refused a request with an image (HTTP {result.status}: {result.detail}): "
                f"teacher.model must accept image input")
    return f"{where} answered with no text (finish_reason={result.finish_reason}): check teacher.model and teacher.max_tokens"


async def _probe(settings: CallSettings, messages: list[dict]) -> CallResult:
    caller = TeacherCaller(settings)
    try:
        return await caller.call(messages)
    finally:
        await caller.close()


def _probe_request(config: Config, settings: CallSettings, cache: ResponseCache) -> tuple[list[dict], str] | None:
    """The request of the first row among the first PROBE_SCAN whose answer is not cached yet (a cached row is
    never sent twice); None when they all are: those rows need no teacher, and neither does the check."""
    for checked in itertools.islice(iter_checked(config.data.train), PROBE_SCAN):
        if checked.row is None:
            continue  # counted by the stage itself, as rejected with its reason
        messages = teacher_messages(checked.row, to_data_url(checked.row.image), config.teacher.include_answer)
        key = request_key(settings.cache_model, messages, settings.sampling)
        if cache.get(key) is None:
            return messages, key
    return None


def check_teacher(config: Config, settings: CallSettings, cache_dir: str, run_token: str = "") -> None:
    """Send one uncached row's request; raise PreflightError when the teacher cannot do the job. The answer is
    cached with `sent_by_run: run_token`, so the stage counts that row as a fresh call (tokens, cost)."""
    cache = ResponseCache(cache_dir)
    probe = _probe_request(config, settings, cache)
    if probe is None:
        log.info("teacher preflight skipped: the first %d rows are answered in the response cache", PROBE_SCAN)
        return
    messages, key = probe
    once = dataclasses.replace(settings, max_retries=PROBE_RETRIES, concurrency=1, requests_per_minute=None,
                               tokens_per_minute=None)
    result = asyncio.run(_probe(once, messages))
    if result.error is not None or not (result.text or "").strip():
        raise PreflightError(f"teacher preflight: {_advice(config, result)}")
    cache.put(key, {**result.to_cache(key, settings.model), "sent_by_run": run_token})
    log.info("teacher preflight: %s answered (%d attempt(s))", config.teacher.model, result.attempts)
