"""Teacher calls over real HTTP against the stand-in teacher: completions verify, 429s are retried no sooner
than Retry-After, timeouts end in a recorded reason, a refused request is not retried, concurrency is capped."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import pytest
from PIL import Image

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.prompts import teacher_messages
from reasoner_ray.data.images import to_data_url
from reasoner_ray.data.readers import iter_rows
from reasoner_ray.distill.client import CallSettings, TeacherCaller
from reasoner_ray.distill.verify import judge
from reasoner_ray.teacher.launch import LocalTeacher


@pytest.fixture(scope="module")
def rows():
    return list(iter_rows(DataSource(split="test", limit=16)))


def _teacher(tmp_path_factory, name, **knobs):
    log = tmp_path_factory.mktemp(name) / "requests.jsonl"
    return LocalTeacher("easy_vqa:test", request_log=log, **knobs), log


@pytest.fixture(scope="module")
def plain_teacher(tmp_path_factory):
    teacher, log = _teacher(tmp_path_factory, "plain", latency_ms=200)
    with teacher:
        yield teacher, log


def _settings(base_url, **over):
    values = dict(base_url=base_url, model="local-teacher", api_key="no-key", sampling={"temperature": 0.7, "max_tokens": 64},
                  timeout_s=5.0, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, concurrency=8)
    return CallSettings(**{**values, **over})


def _call_all(settings, message_lists):
    async def run():
        caller = TeacherCaller(settings)
        try:
            start = time.monotonic()
            results = await asyncio.gather(*(caller.call(m) for m in message_lists))
            return results, time.monotonic() - start
        finally:
            await caller.close()

    return asyncio.run(run())


def test_completions_verify_and_carry_usage(plain_teacher, rows):
    teacher, _ = plain_teacher
    messages = [teacher_messages(r, to_data_url(r.image), include_answer=False) for r in rows]
    results, _ = _call_all(_settings(teacher.base_url), messages)
    for row, result in zip(rows, results):
        assert result.error is None and result.attempts == 1 and result.prompt_tokens > 85 and result.completion_tokens > 5
        assert judge(row, result, "k", cached=False)["status"] == "verified"


def test_concurrency_cap_is_respected(plain_teacher, rows):
    teacher, _ = plain_teacher
    messages = [teacher_messages(r, to_data_url(r.image), include_answer=True) for r in rows]  # 16 requests
    _, elapsed = _call_all(_settings(teacher.base_url, concurrency=4), messages)
    assert elapsed >= 4 * 0.2 * 0.95  # four waves of four at 200 ms each


def test_refused_request_is_not_retried(plain_teacher):
    teacher, log = plain_teacher
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what?"}]}]
    settings = _settings(teacher.base_url, api_key="sk-test-SECRET")
    (result,), _ = _call_all(settings, [messages])
    assert (result.error, result.attempts) == ("teacher_request_refused", 1)
    assert "not in the teacher's index" in result.detail
    assert "SECRET" not in result.detail and "SECRET" not in repr(settings)  # the key never reaches a log line


def test_429_is_retried_after_retry_after(tmp_path_factory, rows):
    teacher, log = _teacher(tmp_path_factory, "ratelimited", p429=1.0, retry_after_s=0.3)
    with teacher:
        messages = [teacher_messages(rows[0], to_data_url(rows[0].image), include_answer=True)]
        (result,), elapsed = _call_all(_settings(teacher.base_url, max_retries=2), messages)
    assert (result.error, result.attempts) == ("teacher_rate_limited", 3)
    assert elapsed >= 2 * 0.3  # the backoff (<= 0.05 s) alone would be far shorter
    statuses = [json.loads(line)["status"] for line in log.read_text().splitlines()]
    assert statuses == [429, 429, 429]


def test_timeout_ends_in_a_recorded_reason(tmp_path_factory, rows):
    teacher, _ = _teacher(tmp_path_factory, "hanging", ptimeout=1.0, hang_s=20)
    with teacher:
        messages = [teacher_messages(rows[0], to_data_url(rows[0].image), include_answer=True)]
        (result,), elapsed = _call_all(_settings(teacher.base_url, timeout_s=0.3, max_retries=1), messages)
    assert (result.error, result.attempts) == ("teacher_timeout", 2)
    assert elapsed < 3


def test_a_200_whose_body_is_not_a_completion_is_retried_like_a_5xx(tmp_path_factory, rows):
    # Every attempt gets a bad body (cut-off JSON, then another schema): retried within the budget, then recorded.
    teacher, log = _teacher(tmp_path_factory, "badbody", pbadbody=1.0)
    with teacher:
        messages = [teacher_messages(rows[0], to_data_url(rows[0].image), include_answer=True)]
        (result,), _ = _call_all(_settings(teacher.base_url, max_retries=2), messages)
    assert (result.error, result.attempts) == ("teacher_bad_response", 3)
    assert [json.loads(line)["fault"] for line in log.read_text().splitlines()] == ["badbody"] * 3
    # Half the attempts bad: every row is answered within the retry budget.
    teacher, log = _teacher(tmp_path_factory, "badbody-half", pbadbody=0.5)
    with teacher:
        messages = [teacher_messages(r, to_data_url(r.image), include_answer=True) for r in rows]
        results, _ = _call_all(_settings(teacher.base_url, max_retries=8), messages)
    faults = [json.loads(line)["fault"] for line in log.read_text().splitlines()]
    assert all(r.error is None for r in results) and faults.count("badbody") > 0
    assert sum(r.attempts for r in results) == len(faults)
