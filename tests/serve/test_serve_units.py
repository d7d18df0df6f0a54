"""The endpoint's pure parts without Ray or vLLM: request schema, input checks, API keys, response building,
deployment options and the `serve deploy` config file.

    .venv/bin/python -m pytest tests/serve/test_serve_units.py -q
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from reasoner_ray.core.config import ServeConfig
from reasoner_ray.core.prompts import COT_INSTRUCTION, COT_INSTRUCTION_MC, DIRECT_INSTRUCTION
from serve.auth import KeyChecker, NoApiKeysError, load_key_digests
from serve.errors import ApiError, pydantic_errors_to_api_error
from serve.responses import completion_body, stream_events
from serve.schemas import ChatCompletionRequest
from serve.validation import prepare_chat

ROOT = Path(__file__).resolve().parents[2]
LIMITS = ServeConfig(model_path="m", model_name="m", max_images=1, max_image_bytes=20_000, max_image_pixels=100 * 100)


def png_url(size: tuple[int, int] = (32, 32)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def chat(content, **extra) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": content}], **extra})


def image_chat(url: str, **extra) -> ChatCompletionRequest:
    return chat([{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Q?"}], **extra)


def refused(request: ChatCompletionRequest) -> ApiError:
    with pytest.raises(ApiError) as caught:
        asyncio.run(prepare_chat(request, LIMITS, "m"))
    return caught.value


def test_strict_schema_refuses_wrong_types_and_unknown_parts():
    with pytest.raises(ValidationError) as caught:
        ChatCompletionRequest.model_validate_json('{"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": "2"}')
    assert pydantic_errors_to_api_error(caught.value.errors()).param == "n"
    with pytest.raises(ValidationError) as caught:
        chat([{"type": "input_audio", "input_audio": {"data": "x"}}])
    error = pydantic_errors_to_api_error(caught.value.errors())  # the part's error, not "content is no string"
    assert (error.param, error.code) == ("messages.0.content.0", "union_tag_invalid") and "input_audio" in error.message
    with pytest.raises(ValidationError) as caught:
        chat([{"type": "image_url", "image_url": {"url": 3}}])
    assert pydantic_errors_to_api_error(caught.value.errors()).param == "messages.0.content.0.image_url.image_url.url"
    assert chat("hi", user="someone", logprobs=False).n == 1  # unknown top-level fields are ignored


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (image_chat("data:image/png;base64,!!!not-base64!!!"), "invalid_base64"),
        (image_chat("data:image/png;base64," + base64.b64encode(b"just some text, no image").decode()), "invalid_image"),
        (image_chat(png_url((101, 100))), "image_too_large"),
        (image_chat("data:image/png;base64," + "A" * 40_000), "image_too_large"),
        (image_chat("http://127.0.0.1:9/cat.png"), "remote_images_disabled"),
        (image_chat("file:///etc/passwd"), "unsupported_image_url"),
        (image_chat("/etc/passwd"), "unsupported_image_url"),
        (chat([{"type": "image_url", "image_url": {"url": png_url()}}] * 2), "too_many_images"),
        (chat("hi", n=99), "n_over_limit"),
        (chat("hi", max_tokens=99_999), "max_tokens_over_limit"),
        (chat("hi", model="other"), "model_not_found"),
    ],
)
def test_bad_inputs_are_refused_with_a_code(request_, code):
    assert refused(request_).code == code


def test_good_image_is_decoded_and_placeholder_kept():
    prepared = asyncio.run(prepare_chat(image_chat(png_url()), LIMITS, "m"))
    assert [img.size for img in prepared.images] == [(32, 32)]
    assert prepared.messages[0]["content"][0] == {"type": "image"}
    assert prepared.max_tokens == LIMITS.default_max_tokens


@pytest.mark.parametrize(
    ("reasoning", "answer_type", "expected"),
    [("cot", "open", COT_INSTRUCTION), ("direct", "open", DIRECT_INSTRUCTION), ("cot", "multiple_choice", COT_INSTRUCTION_MC)],
)
def test_reasoning_appends_the_papers_instruction(reasoning, answer_type, expected):
    prepared = asyncio.run(prepare_chat(image_chat(png_url(), reasoning=reasoning, answer_type=answer_type), LIMITS, "m"))
    assert prepared.messages[-1]["content"][-1]["text"] == f"Q?\n{expected}"
    plain = asyncio.run(prepare_chat(chat("Q?", reasoning=reasoning, answer_type=answer_type), LIMITS, "m"))
    assert plain.messages[-1]["content"] == f"Q?\n{expected}"


def test_api_keys_from_env_and_secret_file(monkeypatch, tmp_path):
    secret = tmp_path / "keys"
    secret.write_text("# rotated 2026-01\nsk-file-1\n\n")
    monkeypatch.setenv("TEST_SERVE_KEYS", "sk-env-1, sk-env-2")
    checker = KeyChecker(load_key_digests("TEST_SERVE_KEYS", str(secret)))
    for key in ("sk-env-1", "sk-env-2", "sk-file-1"):
        checker.check(f"Bearer {key}")
    for header in (None, "", "Bearer ", "Basic sk-env-1", "Bearer sk-env-3", "sk-env-1"):
        with pytest.raises(ApiError) as caught:
            checker.check(header)
        assert caught.value.status == 401 and "sk-env" not in caught.value.message
    monkeypatch.delenv("TEST_SERVE_KEYS")
    with pytest.raises(NoApiKeysError):
        load_key_digests("TEST_SERVE_KEYS", None)


def _out(index, text, tokens, finish=None):
    return SimpleNamespace(index=index, text=text, token_ids=list(range(tokens)), finish_reason=finish)


def test_completion_body_extracts_final_answer_and_counts_usage():
    output = SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[
        _out(1, "no marker here", 4, "length"), _out(0, "Red fills it.\n### Answer: red", 6, "stop")])
    body = completion_body(output, request_id="r", created=0, model="m", reasoning="cot")
    assert [c.final_answer for c in body.choices] == ["red", None]
    assert (body.usage.prompt_tokens, body.usage.completion_tokens, body.usage.total_tokens) == (3, 10, 13)


def test_stream_events_accumulate_text_for_final_answer():
    first = SimpleNamespace(prompt_token_ids=[1, 2], outputs=[_out(0, "It is red.\n### Ans", 3)])
    rest = [SimpleNamespace(prompt_token_ids=None, outputs=[_out(0, "wer: red", 2, "stop")])]

    async def remaining():
        for item in rest:
            yield item

    async def collect():
        done = []
        events = [e async for e in stream_events(first, remaining(), n=1, request_id="r", created=0, model="m",
                                                   include_usage=True, on_done=lambda p, c: done.append((p, c)))]
        return events, done

    events, done = asyncio.run(collect())
    assert events[-1] == b"data: [DONE]\n\n"
    assert b'"final_answer":"red"' in events[-3] and b'"completion_tokens":5' in events[-2]
    assert done == [(2, 5)]


def test_stream_last_chunk_carries_a_null_final_answer_when_the_reply_has_none():
    first = SimpleNamespace(prompt_token_ids=[1], outputs=[_out(0, "no marker", 2), _out(1, "### Answer: 4", 3, "stop")])
    rest = [SimpleNamespace(prompt_token_ids=None, outputs=[_out(0, " here", 1, "length")])]

    async def remaining():
        for item in rest:
            yield item

    async def collect():
        return [e async for e in stream_events(first, remaining(), n=2, request_id="r", created=0, model="m",
                                               include_usage=False, on_done=lambda p, c: None)]

    chunks = [json.loads(e[len(b"data: "):]) for e in asyncio.run(collect())[:-1]]
    last = {c["choices"][0]["index"]: c["choices"][0] for c in chunks if c["choices"][0].get("finish_reason")}
    assert last[0]["final_answer"] is None and last[0]["finish_reason"] == "length"
    assert last[1]["final_answer"] == "4"
    middle = [c["choices"][0] for c in chunks if not c["choices"][0].get("finish_reason")]
    assert middle and all("final_answer" not in c for c in middle)


def test_deployment_options_and_serve_config_file():
    from ray.serve.schema import ServeDeploySchema

    from serve.app import deployment_options

    fixed = deployment_options(ServeConfig(model_path="m", min_replicas=2, max_replicas=2))
    assert fixed["num_replicas"] == 2 and fixed["max_surge_percent"] == 100
    scaled = deployment_options(ServeConfig(model_path="m", min_replicas=1, max_replicas=3))
    assert scaled["autoscaling_config"]["max_replicas"] == 3 and "num_replicas" not in scaled
    deploy = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "serve" / "serve_config.yaml").read_text()))
    app = deploy.applications[0]
    assert app.import_path == "serve.app:build_app"
    ServeConfig.model_validate(app.args)  # every key of the file is a ServeConfig field


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG of a few dozen bytes whose header declares width x height pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_decompression_bomb_header_is_a_400_not_a_crash():
    raw = bomb_png()
    assert len(raw) < 64
    err = refused(image_chat("data:image/png;base64," + base64.b64encode(raw).decode()))
    assert (err.status, err.code) == (400, "image_too_large")
    # the data readers use the same decoder and name the same reason
    from reasoner_ray.core.rows import ImageRef
    from reasoner_ray.data.images import ImageError, open_image

    with pytest.raises(ImageError) as caught:
        open_image(ImageRef(data=raw))
    assert caught.value.reason == "image_too_large"


def _http_request(body: bytes, headers: dict[str, str] | None = None):
    from starlette.requests import Request

    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    headers = {"authorization": "Bearer sk-test", **(headers or {})}
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    return Request(scope, receive)


def _deployment(limits: ServeConfig):
    import hashlib

    from serve.deployment import ChatDeployment

    stub = SimpleNamespace(config=limits, model_name="m", created=0, engine=None,
                           keys=KeyChecker([hashlib.sha256(b"sk-test").digest()]))
    return ChatDeployment, stub


def test_request_body_over_the_cap_is_a_413_whether_or_not_it_declares_its_length():
    limits = LIMITS.model_copy(update={"max_request_bytes": 100_000})
    cls, stub = _deployment(limits)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 200_000}]}).encode()
    for headers in ({"content-length": str(len(body))}, {}):  # declared, or streamed (chunked) past the cap
        with pytest.raises(ApiError) as caught:
            asyncio.run(cls._chat(stub, _http_request(body, headers), 0.0))
        assert (caught.value.status, caught.value.code) == (413, "request_too_large")


def test_models_route_does_not_reveal_the_server_folder():
    limits = ServeConfig(model_path="/srv/private/runs/r7/rounds/r2/dpo/output/model", model_name="m")
    cls, stub = _deployment(limits)
    response = asyncio.run(cls.models(stub, _http_request(b"", {})))
    body = json.loads(response.body)
    assert body["data"][0]["id"] == "m" and "/srv/private" not in response.body.decode()


def _serve_http(handler):
    """Run `handler(reader, writer)` as a local TCP server; returns (port, connections seen, server)."""
    seen = []

    async def on_connect(reader, writer):
        seen.append(True)
        await handler(reader, writer)

    async def start():
        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        return server.sockets[0].getsockname()[1], server

    return seen, start


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "169.254.169.254", "10.0.0.1",
                                  "[::1]", "0.0.0.0"])
def test_remote_image_to_a_non_public_address_is_refused_without_connecting(host):
    from serve.remote_images import fetch_remote_image

    async def answer(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        await writer.drain()
        writer.close()

    seen, start = _serve_http(answer)

    async def run():
        port, server = await start()
        async with server:
            with pytest.raises(ApiError) as caught:
                await fetch_remote_image(f"http://{host}:{port}/img.png", 1000, "p")
            return caught.value

    err = asyncio.run(run())
    assert (err.status, err.code) == (400, "image_url_not_allowed") and not seen


def test_remote_image_failures_do_not_echo_the_upstream_and_a_slow_drip_is_cut():
    from serve.remote_images import fetch_remote_image

    async def not_found(reader, writer):
        writer.write(b"HTTP/1.1 404 Not Found\r\nX-Internal: secret\r\nContent-Length: 6\r\n\r\nsecret")
        await writer.drain()
        writer.close()

    async def drip(reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):  # one byte every 0.2 s: each read is quick, the whole fetch is not
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.2)
        writer.close()

    async def fetch(handler, **kw):
        _, start = _serve_http(handler)
        port, server = await start()
        async with server:
            with pytest.raises(ApiError) as caught:
                await fetch_remote_image(f"http://127.0.0.1:{port}/img.png", 5000, "p", allow=lambda address: True, **kw)
            return caught.value

    import time

    err = asyncio.run(fetch(not_found))
    assert err.code == "image_fetch_failed" and "404" not in err.message and "secret" not in err.message
    started = time.monotonic()
    err = asyncio.run(fetch(drip, timeout_s=1.0))
    assert err.code == "image_fetch_failed" and time.monotonic() - started < 3.0


def test_a_seed_must_be_a_64_bit_integer():
    assert chat("hi", seed=2 ** 63 - 1).seed == 2 ** 63 - 1 and chat("hi", seed=-(2 ** 63)).seed == -(2 ** 63)
    for seed in (2 ** 63, -(2 ** 63) - 1, 10 ** 30):
        with pytest.raises(ValidationError) as caught:
            chat("hi", seed=seed)
        assert pydantic_errors_to_api_error(caught.value.errors()).param == "seed"


def test_engine_refusals_are_said_in_the_servers_words():
    from serve.engine import _client_error

    vllm_text = ("The decoder prompt (length 3001) is longer than the maximum model length of 2048. Make sure that "
                 "`max_model_len` is no smaller than the number of text tokens plus multimodal tokens")
    error = _client_error(ValueError(vllm_text), 2048)
    assert (error.code, error.param) == ("context_length_exceeded", "messages")
    assert error.message == "the prompt (text and image tokens) is longer than this server's context of 2048 tokens"
    other = _client_error(ValueError("Internal: sampler tensor at /opt/vllm/v1/sample.py mismatched"), 2048)
    assert "/opt" not in other.message and "sampler" not in other.message and other.status == 400


@pytest.mark.parametrize("fmt, accepted", [("PNG", True), ("JPEG", True), ("WEBP", True), ("GIF", True),
                                           ("BMP", False), ("TIFF", False), ("ICO", False)])
def test_images_decode_from_the_common_formats_only(fmt, accepted):
    import io

    from PIL import Image

    from reasoner_ray.data.images import ImageError, decode_image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format=fmt)
    if accepted:
        assert decode_image(buf.getvalue()).size == (16, 16)
    else:
        with pytest.raises(ImageError) as caught:
            decode_image(buf.getvalue())
        assert caught.value.reason == "corrupt_image"
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        assert refused(image_chat(url)).code == "invalid_image"
