"""The endpoint's pure parts without Ray or vLLM: request schema, input checks, API keys, response building,
deployment options and the `serve deploy` config file.

    .venv/bin/python -m pytest tests/serve/test_serve_units.py -q
"""

from __future__ import annotations

import asyncio
import base64
import io
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
    with pytest.raises(ValidationError):
        chat([{"type": "input_audio", "input_audio": {"data": "x"}}])
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
