"""jobs/evaluate.py against an OpenAI-compatible endpoint (the stand-in teacher, which answers from the
annotations, so every CoT reply is right): the paper-style table, every reply scored and exported, token counts;
a rerun reads finished benchmarks back, and a benchmark killed half-way is redone from the cache, so the endpoint
sees each request once. The model-folder path is the main job's eval stage (tests/pipeline/test_iterative_job.py);
the two paths agree reply for reply in tests/serve/test_serve_endpoint.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasoner_ray.teacher.launch import LocalTeacher

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _evaluate(out: Path, base_url: str, config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "jobs/evaluate.py", "--config", str(config), "--endpoint", base_url,
                           "--endpoint-model", "local-teacher", "--out", str(out), f"run.dir={out.parent}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_endpoint_evaluation_table_replies_and_resume(tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text("evaluate:\n  benchmarks:\n"
                      "    shapes: {format: easy_vqa, split: test, limit: 12}\n"
                      "    more_shapes: {format: easy_vqa, split: test, limit: 5}\n"
                      "eval: {max_tokens: 64}\n")
    out, log = tmp_path / "eval", tmp_path / "requests.jsonl"
    with LocalTeacher("easy_vqa:test", request_log=log) as endpoint:
        first = _evaluate(out, endpoint.base_url, config)
        assert first.returncode == 0, first.stderr[-3000:]
        sent = _requests(log)
        assert len(sent) == len({r["key"] for r in sent}) == 2 * (12 + 5) - 2 * 5  # the 5 are the 12's first 5
        # CoT: the stand-in answers from the annotations, so it is always right (metric: the benchmark's main type)
        assert re.search(r"\| shapes \| (VQA )?accuracy \| 12 \| 100\.0 ± 0\.0 \|", first.stdout), first.stdout[-1500:]
        assert "| average |" in first.stdout
        results = json.loads((out / "results.json").read_text())
        shapes = results["benchmarks"]["shapes"]
        assert shapes["summary"]["cot"]["all"]["accuracy"] == 1.0 and shapes["replies"] == 24
        assert shapes["tokens"]["completion"] > 0 and results["estimated_cost_usd"] is None  # not a priced model
        replies = [json.loads(line) for line in (out / "replies.jsonl").read_text().splitlines()]
        assert len(replies) == 2 * (12 + 5) and {r["benchmark"] for r in replies} == {"shapes", "more_shapes"}
        assert all(r["correct"] for r in replies if r["style"] == "cot")

        again = _evaluate(out, endpoint.base_url, config)  # finished: read back, nothing sent
        assert again.returncode == 0 and len(_requests(log)) == len(sent)
        assert "benchmark shapes: done earlier" in again.stdout
        (out / "shapes" / "result.json").unlink()  # as if killed before the benchmark finished
        redone = _evaluate(out, endpoint.base_url, config)
        assert redone.returncode == 0 and len(_requests(log)) == len(sent)  # redone from the cache
        assert json.loads((out / "results.json").read_text())["benchmarks"]["shapes"]["tokens"]["cached_replies"] == 24


def test_model_folder_with_verifier_and_clear_errors(tmp_path, tiny_qwen2_vl):
    """A model folder with eval.samples and a reference: the paper table and the verifier table; a missing
    benchmark file is named before anything runs."""
    config = tmp_path / "bench.yaml"
    config.write_text("evaluate:\n  benchmarks:\n    shapes: {format: easy_vqa, split: test, limit: 6}\n"
                      "eval: {max_tokens: 16, samples: 2}\nrollout: {max_model_len: 512, kv_cache_gib: 0.5}\n")
    out = tmp_path / "eval"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, "jobs/evaluate.py", "--config", str(config), "--model", tiny_qwen2_vl,
                          "--reference", tiny_qwen2_vl, "--out", str(out), f"run.dir={tmp_path}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"\| shapes \| (VQA )?accuracy \| 6 \| ", run.stdout)
    assert "The model as a verifier of 2 sampled CoT chains" in run.stdout and "| shapes | " in run.stdout.split("verifier")[-1]
    verifier = json.loads((out / "results.json").read_text())["benchmarks"]["shapes"]["verifier"]["summary"]["all"]
    assert {"majority", "best_of_n/policy/sum", "oracle"} <= set(verifier)  # policy == reference: every reward is 0

    missing = subprocess.run([sys.executable, "jobs/evaluate.py", "--model", tiny_qwen2_vl, "--out", str(out),
                              "evaluate.benchmarks={chart: {format: chartqa, split: test, path: /nonexistent}}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith(
        "error: evaluate.benchmarks.chart (format chartqa, path /nonexistent): data path /nonexistent does not exist")
