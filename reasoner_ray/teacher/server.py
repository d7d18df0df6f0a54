"""The stand-in teacher: an OpenAI-compatible chat-completions server that writes rationales from annotations.

It is NOT a model. It recognises a request's image by the sha256 of its bytes (the pipeline sends original bytes
as a data URL), finds the question among that image's annotated questions, and writes a rationale in varied
phrasings (`phrasing.py`) ending in `### Answer: <answer>` (a letter for multiple choice). Tests and the
quickstart use it in place of a paid teacher; knobs inject the faults a real endpoint shows.

Run:  python -m reasoner_ray.teacher.server --data easy_vqa:train --port 8301 \
          [--latency-ms 500] [--p429 0.2 --p5xx 0.05 --ptimeout 0.05 --pbadbody 0.05] [--pmalformed 0.05 --pwrong 0.1] \
          [--request-log requests.jsonl] [--model-name local-teacher] [--api-key-env TEACHER_API_KEY]
Endpoints: POST /v1/chat/completions, GET /v1/models, GET /health. Like a real endpoint it answers 404 to a model
name other than --model-name and, with --api-key-env, 401 to a missing or wrong key. Every request received is
logged as one JSON line {"t", "key", "attempt", "status", "fault"}; `key` is `request_key.body_key`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from reasoner_ray.core import arithmetic_tasks, digit_tasks
from reasoner_ray.core.prompts import ANSWER_MARKER, gold_for_response, question_text
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.images import ImageError, decode_data_url
from reasoner_ray.distill.request_key import body_key
from reasoner_ray.teacher import phrasing
from reasoner_ray.teacher.faults import FaultPlan
from reasoner_ray.teacher.index import AnnotationIndex, ImageEntry

IMAGE_TOKENS = 85  # what OpenAI bills a low-detail image; the usage counts here are estimates of that kind


@dataclass
class TeacherSettings:
    model_name: str = "local-teacher"
    latency_s: float = 0.0
    hang_s: float = 30.0  # how long an injected timeout holds the request
    retry_after_s: float = 1.0
    faults: FaultPlan = FaultPlan()
    api_key: str | None = field(default=None, repr=False)  # None: any key is accepted (like a local vLLM)


class BadRequest(ValueError):
    pass


BAD_BODIES = ('{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"index": 0, "mess',
              '{"object": "list", "data": []}')


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status, headers=headers)


def _image_and_text(messages: list[dict[str, Any]]) -> tuple[bytes, str]:
    """The first data-URL image and all user text of the request."""
    image, texts = None, []
    for msg in messages:
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            if part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif part.get("type") == "image_url" and image is None:
                url = (part.get("image_url") or {}).get("url", "")
                try:
                    image = decode_data_url(url)
                except ImageError as err:
                    raise BadRequest(f"image_url is not a base64 data URL: {err.detail}") from None
    if image is None:
        raise BadRequest("the user message holds no image_url part")
    return image, "\n".join(texts)


def _wrong_answer(row: VQARow, gold: str, rng: random.Random) -> str:
    if row.answer_type == "multiple_choice" and row.choices:
        return rng.choice([chr(ord("A") + i) for i in range(len(row.choices)) if chr(ord("A") + i) != gold] or ["Z"])
    if row.answer_type == "number" and gold.isdigit():
        return str(rng.choice([int(gold) + o for o in (-2, -1, 1, 2) if int(gold) + o >= 0]))  # a slip
    return phrasing.wrong_easy_vqa_answer(gold, rng)


def _easy_vqa_rationale(row: VQARow, entry: ImageEntry, answer: str, rng: random.Random) -> str:
    return phrasing.easy_vqa_rationale(row.question, answer, entry.facts, rng)


def _digits_rationale(row: VQARow, entry: ImageEntry, answer: str, rng: random.Random) -> str:
    ann = entry.annotations.get(row.id)
    if ann is None:
        return phrasing.generic_rationale(question_text(row), answer, rng)
    return digit_tasks.rationale(ann["kind"], ann["digits"], ann["k"], answer, rng)


def _arithmetic_rationale(row: VQARow, entry: ImageEntry, answer: str, rng: random.Random) -> str:
    ann = entry.annotations.get(row.id)
    if ann is None:
        return phrasing.generic_rationale(question_text(row), answer, rng)
    return arithmetic_tasks.rationale(ann["kind"], ann["digits"], answer, rng, ann["choices"])


# row.source -> rationale writer; any other source gets a generic rationale from the question and answer.
RATIONALE_WRITERS = {"easy_vqa": _easy_vqa_rationale, "digits": _digits_rationale,
                     "arithmetic": _arithmetic_rationale}


def write_completion(row: VQARow, entry: ImageEntry, content_fault: str | None, rng: random.Random) -> str:
    gold = gold_for_response(row)
    answer = _wrong_answer(row, gold, rng) if content_fault == "wrong" else gold
    writer = RATIONALE_WRITERS.get(row.source)
    if writer is not None:
        rationale = writer(row, entry, answer, rng)
    else:
        rationale = phrasing.generic_rationale(question_text(row), answer, rng)
    if content_fault == "malformed":
        return f"{rationale.split('.')[0]}. {rng.choice(phrasing.TRUNCATED)}"
    return f"{rationale}\n{ANSWER_MARKER} {answer}"


def _count_tokens(text: str) -> int:
    return len(text.split())


def build_app(index: AnnotationIndex, settings: TeacherSettings, request_log: TextIO | None = None) -> FastAPI:
    app = FastAPI(title="reasoner-ray stand-in teacher")
    attempts: Counter[str] = Counter()

    def log_request(key: str, attempt: int, status: int | str, fault: str | None) -> None:
        if request_log is not None:
            rec = {"t": round(time.time(), 4), "key": key, "attempt": attempt, "status": status, "fault": fault}
            request_log.write(json.dumps(rec) + "\n")
            request_log.flush()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": settings.model_name, "object": "model", "created": 0, "owned_by": "reasoner-ray"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        if settings.api_key is not None and request.headers.get("authorization") != f"Bearer {settings.api_key}":
            return _error(401, "Incorrect API key provided", "invalid_request_error")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON", "invalid_request_error")
        if body.get("model") != settings.model_name:  # as OpenAI and vLLM do
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        key = body_key(body)
        attempt = attempts[key]
        attempts[key] += 1
        fault = settings.faults.transport(key, attempt)
        if fault == "429":
            log_request(key, attempt, 429, fault)
            headers = {"Retry-After": str(math.ceil(settings.retry_after_s)), "retry-after-ms": str(int(settings.retry_after_s * 1000))}
            return _error(429, "rate limit reached (injected)", "rate_limit_error", headers)
        if fault == "5xx":
            log_request(key, attempt, 503, fault)
            return _error(503, "server overloaded (injected)", "server_error")
        if fault == "timeout":
            log_request(key, attempt, "timeout", fault)
            await asyncio.sleep(settings.hang_s)
            return _error(504, "held past the client's timeout (injected)", "server_error")
        if fault == "badbody":  # a 200 whose body is cut off, or of another schema (a misbehaving proxy)
            log_request(key, attempt, 200, fault)
            body = BAD_BODIES[attempt % len(BAD_BODIES)]
            return Response(body, status_code=200, media_type="application/json")
        try:
            image, text = _image_and_text(list(body.get("messages") or []))
            entry = index.lookup(image)
            if entry is None:
                raise BadRequest("image is not in the teacher's index (was it re-encoded?)")
            row = entry.match(text)
            if row is None:
                raise BadRequest("no annotated question of this image appears in the user message")
        except BadRequest as err:
            log_request(key, attempt, 400, None)
            return _error(400, str(err), "invalid_request_error")
        content_fault = settings.faults.content(key)
        n = int(body.get("n") or 1)
        texts = [write_completion(row, entry, content_fault, random.Random(f"{key}:{i}")) for i in range(n)]
        await asyncio.sleep(settings.latency_s)
        log_request(key, attempt, 200, content_fault)
        prompt_tokens = _count_tokens(text) + IMAGE_TOKENS
        completion_tokens = sum(_count_tokens(t) for t in texts)
        return JSONResponse({
            "id": f"chatcmpl-{key[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or settings.model_name,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="OpenAI-compatible stand-in teacher (rationales from annotations)")
    p.add_argument("--data", required=True, help="format:split-or-path, e.g. easy_vqa:train or jsonl:rows.jsonl")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8301)
    p.add_argument("--model-name", default="local-teacher")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--hang-s", type=float, default=30.0, help="how long an injected timeout holds a request")
    p.add_argument("--retry-after-s", type=float, default=1.0)
    for name in ("p429", "p5xx", "ptimeout", "pbadbody", "pmalformed", "pwrong"):
        p.add_argument(f"--{name}", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--request-log", default=None, help="append one JSON line per request received")
    p.add_argument("--api-key-env", default=None, help="require `Authorization: Bearer $<this variable>`")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    plan = FaultPlan(args.p429, args.p5xx, args.ptimeout, args.pbadbody, args.pmalformed, args.pwrong, args.seed)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise SystemExit(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    settings = TeacherSettings(args.model_name, args.latency_ms / 1000, args.hang_s, args.retry_after_s, plan, api_key)
    index = AnnotationIndex.from_spec(args.data)
    log_file = open(args.request_log, "a", buffering=1) if args.request_log else None  # noqa: SIM115
    try:
        uvicorn.run(build_app(index, settings, log_file), host=args.host, port=args.port, log_level="warning",
                    timeout_graceful_shutdown=1)
    finally:
        if log_file is not None:
            log_file.close()


if __name__ == "__main__":
    main()
