"""The Serve deployment: a FastAPI ingress holding one vLLM async engine per replica.

Routes: POST /v1/chat/completions, GET /v1/models (both need `Authorization: Bearer <key>`), GET /healthz and
GET /metrics (open, for probes and scrapers). Ingress and engine share one replica on purpose: a second
deployment would add a Ray hop per request and a second process competing for the CPU, for nothing a
single replica cannot do (requests are async; the engine batches them). Build it with serve.app:build_app.
"""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from reasoner_ray.core.config import ServeConfig
from serve.auth import KeyChecker, load_key_digests
from serve.errors import ApiError, pydantic_errors_to_api_error
from serve.metrics import ServeMetrics
from serve.responses import completion_body, stream_events
from serve.schemas import ChatCompletionRequest, ModelCard, ModelList
from serve.validation import prepare_chat, read_body

log = logging.getLogger("ray.serve")
CHAT_ROUTE = "/v1/chat/completions"

fastapi_app = FastAPI(title="reasoner-ray", docs_url=None, redoc_url=None, openapi_url=None)


@fastapi_app.exception_handler(ApiError)
async def _api_error(_request: Request, err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


@fastapi_app.exception_handler(HTTPException)
async def _http_error(_request: Request, err: HTTPException) -> JSONResponse:
    # unknown routes and wrong methods answer in the OpenAI error shape too
    body = ApiError(err.status_code, str(err.detail), code="not_found" if err.status_code == 404 else None).body()
    return JSONResponse(body, status_code=err.status_code)


def served_model_name(config: ServeConfig) -> str:
    return config.model_name or str(config.model_path).rstrip("/").rsplit("/", 1)[-1]


class ChatDeployment:
    """Decorated with @serve.deployment / @serve.ingress by serve.app.build_app (options come from config)."""

    def __init__(self, config: ServeConfig):
        from ray import serve as ray_serve

        from serve.engine import ChatEngine

        self.config = config
        self.model_name = served_model_name(config)
        self.keys = KeyChecker(load_key_digests(config.api_keys_env, config.api_keys_file))
        replica = ray_serve.get_replica_context().replica_id.unique_id
        self.metrics = ServeMetrics(replica)
        self.created = int(time.time())
        self.engine = ChatEngine(config)
        log.info("serving %s from %s", self.model_name, config.model_path)

    @fastapi_app.get("/healthz")
    async def healthz(self) -> dict:
        await self.engine.check_health()
        return {"status": "ok", "model": self.model_name}

    @fastapi_app.get("/metrics")
    async def metrics(self) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    @fastapi_app.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        self.keys.check(request.headers.get("authorization"))
        # `root` is the served name too: the model folder is a path on the server, not the client's business.
        card = ModelCard(id=self.model_name, created=self.created, root=self.model_name)
        return JSONResponse(ModelList(data=[card]).model_dump())

    @fastapi_app.post(CHAT_ROUTE)
    async def chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await self._chat(request, started)
        except ApiError as err:
            self.metrics.observe(CHAT_ROUTE, err.status, time.perf_counter() - started, err.code or err.type)
            raise
        except Exception:
            self.metrics.observe(CHAT_ROUTE, 500, time.perf_counter() - started, "internal_error")
            log.exception("chat completion failed")
            raise ApiError(500, "internal error while generating", type="server_error", code="internal_error")
        return response

    async def _chat(self, request: Request, started: float) -> Response:
        self.keys.check(request.headers.get("authorization"))
        try:
            body = ChatCompletionRequest.model_validate_json(await read_body(request, self.config.max_request_bytes))
        except ValidationError as err:
            raise pydantic_errors_to_api_error(err.errors(include_input=False)) from None
        prepared = await prepare_chat(body, self.config, self.model_name)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        outputs = self.engine.generate(prepared, body, request_id, stream=body.stream)
        first = await anext(outputs)  # errors from the engine (context length) surface here, before any byte
        if not body.stream:
            completion = completion_body(first, request_id=request_id, created=int(time.time()),
                                         model=self.model_name, reasoning=body.reasoning)
            self.metrics.tokens(completion.usage.prompt_tokens, completion.usage.completion_tokens)
            self.metrics.observe(CHAT_ROUTE, 200, time.perf_counter() - started)
            return Response(completion.model_dump_json(), media_type="application/json")

        def on_done(prompt_tokens: int, completion_tokens: int) -> None:
            self.metrics.tokens(prompt_tokens, completion_tokens)
            self.metrics.observe(CHAT_ROUTE, 200, time.perf_counter() - started)

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = stream_events(first, outputs, n=body.n, request_id=request_id, created=int(time.time()),
                               model=self.model_name, include_usage=include_usage, on_done=on_done)
        return StreamingResponse(events, media_type="text/event-stream")

    async def check_health(self) -> None:
        """Called by Serve periodically: a dead engine fails the replica so Serve replaces it."""
        await self.engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.shutdown()
