"""The real endpoint: Ray Serve + vLLM (tiny Qwen2-VL) on 127.0.0.1, called with the real `openai` client.

One deployment is shared by the module (about 50 s to start); the redeploy test runs last and rolls it to a
copy of the model while requests are in flight.

    .venv/bin/python -m pytest tests/serve/test_serve_endpoint.py -q
"""

from __future__ import annotations

import base64
import io
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from reasoner_ray.core.config import ServeConfig
from test_serve_units import bomb_png  # tests/serve is on the path (no __init__.py), like tests/train's conftest

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]

API_KEY = "sk-serve-test-7f3a9c2e41d8b6"
WRONG_KEY = "sk-wrong-key-5be0c7d19a2f"
MODEL = "reasoner"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_url(size=(48, 48), noise=False) -> str:
    if noise:  # seeded: an unseeded image made the tiny random models' greedy reply change from run to run
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    else:
        image = Image.new("RGB", size, (220, 30, 30))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_message(url: str, text: str = "What color is the image?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def served(ray_local, tiny_qwen2_vl, tmp_path_factory):
    from ray import serve as ray_serve

    from serve.local import start_local

    secret = tmp_path_factory.mktemp("secret") / "api_keys"
    secret.write_text(f"{API_KEY}\n")
    config = ServeConfig(
        model_path=tiny_qwen2_vl, model_name=MODEL, api_keys_env="SERVE_TEST_UNSET_KEYS", api_keys_file=str(secret),
        max_images=1, max_image_bytes=24_000, max_image_pixels=128 * 128, max_n=4, max_tokens_limit=64,
        default_max_tokens=16, max_model_len=512, max_request_bytes=200_000,
    )
    url = start_local(config, port=free_port())
    yield config, url
    ray_serve.shutdown()


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[1], api_key=API_KEY, max_retries=0, timeout=60)


def post(served, body: bytes | dict, key: str | None = API_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(f"{served[1]}/chat/completions", headers=headers, timeout=60, **kwargs)


def test_models_lists_the_served_model(client, served):
    (card,) = client.models.list().data
    assert card.id == MODEL and card.root == MODEL  # never the server's folder


def test_non_streaming_image_chat_with_usage(client):
    reply = client.chat.completions.create(model=MODEL, messages=image_message(png_url()), max_tokens=12,
                                           temperature=0.0, seed=3)
    (choice,) = reply.choices
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens >= 1 and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.prompt_tokens > 20  # the image placeholder expands into image tokens
    assert "final_answer" in choice.model_extra
    again = client.chat.completions.create(model=MODEL, messages=image_message(png_url()), max_tokens=12,
                                           temperature=0.0, seed=3)
    assert again.choices[0].message.content == choice.message.content  # greedy is reproducible


def test_n_samples_stop_and_top_p(client):
    reply = client.chat.completions.create(model=MODEL, messages=image_message(png_url()), n=3, max_tokens=10,
                                           temperature=1.0, top_p=0.9, seed=11, stop=["###"])
    assert sorted(c.index for c in reply.choices) == [0, 1, 2]
    assert all("###" not in c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens >= 3


def test_streaming_sse_matches_usage(client):
    stream = client.chat.completions.create(model=MODEL, messages=image_message(png_url()), n=2, max_tokens=8,
                                            stream=True, stream_options={"include_usage": True})
    texts, finishes, usage = {0: "", 1: ""}, {}, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
                assert "final_answer" in choice.model_extra  # null when the reply has none
    assert set(finishes) == {0, 1} and usage is not None and usage.completion_tokens >= 2
    assert all(texts.values())


def test_cot_and_direct_append_the_papers_instruction(client):
    def prompt_tokens(reasoning):
        extra = {"reasoning": reasoning} if reasoning else {}
        reply = client.chat.completions.create(model=MODEL, messages=image_message(png_url(), "Q?"), max_tokens=4,
                                               extra_body=extra)
        assert reply.model_extra.get("reasoning") == reasoning
        return reply.usage.prompt_tokens

    plain, direct, cot = prompt_tokens(None), prompt_tokens("direct"), prompt_tokens("cot")
    assert plain < direct and plain < cot and direct != cot


def test_auth_refuses_missing_and_wrong_keys(served):
    stranger = openai.OpenAI(base_url=served[1], api_key=WRONG_KEY, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    with pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model=MODEL, messages=image_message(png_url()))
    assert httpx.get(f"{served[1]}/models").status_code == 401  # no Authorization header at all
    for key in (None, WRONG_KEY):
        response = post(served, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, key=key)
        assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


GOOD = {"model": MODEL, "max_tokens": 4, "messages": image_message(png_url())}
BAD_INPUTS = {
    "malformed_json": (b'{"model": "reasoner", "messages": [', "json_invalid"),
    "wrong_type_n": ({**GOOD, "n": "2"}, None),
    "wrong_type_messages": ({**GOOD, "messages": "hello"}, None),
    "unknown_part_type": ({**GOOD, "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "union_tag_invalid"),
    "bad_base64": ({**GOOD, "messages": image_message("data:image/png;base64,@@not base64@@")}, "invalid_base64"),
    "not_an_image": ({**GOOD, "messages": image_message("data:image/png;base64," + base64.b64encode(b"GIF? no, text").decode())}, "invalid_image"),
    "over_pixel_limit": ({**GOOD, "messages": image_message(png_url((200, 200)))}, "image_too_large"),
    "over_byte_limit": ({**GOOD, "messages": image_message(png_url((120, 120), noise=True))}, "image_too_large"),
    "too_many_images": ({**GOOD, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url()}}] * 2}]}, "too_many_images"),
    "over_context": ({**GOOD, "messages": [{"role": "user", "content": "red green blue " * 400}]}, "context_length_exceeded"),
    "n_over_limit": ({**GOOD, "n": 5}, "n_over_limit"),
    "remote_url": ({**GOOD, "messages": image_message("https://127.0.0.1:9/cat.png")}, "remote_images_disabled"),
    "file_url": ({**GOOD, "messages": image_message("file:///etc/hostname")}, "unsupported_image_url"),
    "local_path": ({**GOOD, "messages": image_message(str(Path(__file__)))}, "unsupported_image_url"),
    "decompression_bomb": ({**GOOD, "messages": image_message("data:image/png;base64," + base64.b64encode(bomb_png()).decode())},
                           "image_too_large"),
    "body_over_limit": ({**GOOD, "messages": [{"role": "user", "content": "x" * 300_000}]}, "request_too_large"),
}
STATUS = {"body_over_limit": 413}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_openai_error_and_server_keeps_serving(served, case):
    body, code = BAD_INPUTS[case]
    response = post(served, body)
    assert response.status_code == STATUS.get(case, 400), response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code, error
    assert post(served, GOOD).status_code == 200


def test_openai_client_sees_bad_request(client):
    with pytest.raises(openai.BadRequestError, match="n_over_limit|over this server"):
        client.chat.completions.create(model=MODEL, messages=image_message(png_url()), n=9)



def test_a_burst_of_seeded_requests_over_the_engines_token_budget_is_served(client):
    """On CPU a chunked prefill (prompts of one step over the engine's token budget, 4,096 here) rewinds a seeded
    request's generator, which CPU torch generators cannot do: vLLM's engine died and every later request failed
    ("CPU Generator does not use offset"). The endpoint's engine prefills whole prompts on CPU, as the rollouts do."""
    text = "Count the shapes, name each colour, then answer: what color is the image? " * 16
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda i: client.chat.completions.create(
            model=MODEL, messages=image_message(png_url(), text), max_tokens=4, temperature=1.0, seed=i), range(48)))
    assert sum(r.usage.prompt_tokens for r in replies) > 2 * 4096  # more than two steps' budget arrived at once
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in replies)
    assert client.chat.completions.create(model=MODEL, messages=image_message(png_url()), max_tokens=2).choices

def test_health_and_metrics(served):
    base = served[1].removesuffix("/v1")
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
    text = httpx.get(f"{base}/metrics").text
    for name in ("reasoner_requests_total", "reasoner_request_latency_seconds_bucket", "reasoner_errors_total",
                 "reasoner_generated_tokens_total"):
        assert name in text
    assert 'code="n_over_limit"' in text


def test_keys_never_reach_the_logs(served, ray_local):
    post(served, GOOD, key=WRONG_KEY)
    log_dir = Path(ray_local._private.worker.global_worker.node.get_session_dir_path()) / "logs"
    files = [p for p in log_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert API_KEY.encode() not in data and WRONG_KEY.encode() not in data, path


def test_evaluating_the_endpoint_equals_evaluating_the_model_folder(served, tiny_qwen2_vl, tmp_path, monkeypatch):
    """pipeline/evaluation.py both ways on the same questions: vLLM actors on the folder, and the served endpoint
    through the openai client. Greedy replies are the same text, so the accuracies are the same."""
    from reasoner_ray.core.config import build_config
    from reasoner_ray.pipeline.evaluation import evaluate_source
    from reasoner_ray.pipeline.generate import EndpointBackend, ModelBackend, read_table

    monkeypatch.setenv("EVAL_TEST_KEY", API_KEY)
    config = build_config({}, ["data.eval.split=test", "data.eval.limit=12", "eval.max_tokens=24",
                               "rollout.max_model_len=512", "rollout.kv_cache_gib=0.5", f"evaluate.endpoint.base_url={served[1]}",
                               f"evaluate.endpoint.model={MODEL}", "evaluate.endpoint.api_key_env=EVAL_TEST_KEY"])
    folder = evaluate_source(config, ModelBackend(tiny_qwen2_vl), config.data.eval, tmp_path / "folder")
    endpoint = evaluate_source(config, EndpointBackend(config.evaluate.endpoint, str(tmp_path / "cache")),
                               config.data.eval, tmp_path / "endpoint")

    def replies(out):
        rows = read_table(out / "scored", ["question_id", "style", "text", "value"]).to_pylist()
        return {(r["question_id"], r["style"]): (r["text"], r["value"]) for r in rows}

    assert folder.replies == endpoint.replies == 24
    assert replies(tmp_path / "folder") == replies(tmp_path / "endpoint")
    for style in ("cot", "direct"):
        assert folder.summary[style]["all"] == endpoint.summary[style]["all"]


def test_redeploy_to_another_model_drops_no_request(served, client, tmp_path):
    """Roll to a copy of the model (another folder) while 3 clients keep sending; every request must succeed."""
    from serve.local import redeploy

    config, _ = served
    new_folder = tmp_path / "round_2_model"
    shutil.copytree(config.model_path, new_folder)
    # /v1/models names no server folder; the new replica shows itself by its start time (`created`).
    started = client.models.list().data[0].created
    results, stop = [], threading.Event()

    def keep_sending():
        while not stop.is_set():
            try:
                client.chat.completions.create(model=MODEL, messages=image_message(png_url()), max_tokens=8)
                results.append("ok")
            except Exception as err:  # noqa: BLE001 - every failure is recorded and fails the test below
                results.append(repr(err))

    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            pool.submit(keep_sending)
        redeploy(config.model_copy(update={"model_path": str(new_folder)}))
        for _ in range(20):  # keep the load on while the old replica drains
            if client.models.list().data[0].created != started:
                break
        stop.set()
    assert client.models.list().data[0].created != started
    failures = [r for r in results if r != "ok"]
    assert len(results) > 20 and not failures, failures[:3]


# The endpoint's engine renders prompts and passes images as the rollout engines do (models/chat.render_prompt, raw
# PIL images), and tests/engines/test_vllm_actor.py generates with every family through that path; here two
# families whose image processing differs most from qwen2_vl's (tiles, any-resolution crops) go through the
# endpoint itself. Each roll starts a vLLM engine (about 75 s here), so the other five are left to the actor test.
@pytest.mark.parametrize("family", ["llava_next", "internvl"])
def test_other_families_are_served(family, served, client, request):
    """The endpoint rolled to another family's tiny model answers an image question through the real `openai`
    client (qwen2_vl is the module's model). Runs after the redeploy test: each one rolls again."""
    from serve.local import redeploy

    config, _ = served
    started = client.models.list().data[0].created
    redeploy(config.model_copy(update={"model_path": request.getfixturevalue(f"tiny_{family}")}))
    for _ in range(60):  # the old replica may still be draining
        if client.models.list().data[0].created != started:
            break
        time.sleep(0.5)
    assert client.models.list().data[0].created != started  # the new family's replica answers from here on
    reply = client.chat.completions.create(model=MODEL, messages=image_message(png_url(noise=True)), max_tokens=6,
                                           temperature=0)
    assert reply.choices[0].message.content and 1 <= reply.usage.completion_tokens <= 6
    assert reply.usage.prompt_tokens > 16  # the image's tokens reached the model
