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


def _evaluate(out: Path, base_url: str, config: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "jobs/evaluate.py", "--config", str(config), "--endpoint", base_url,
                           "--endpoint-model", "local-teacher", "--out", str(out), f"run.dir={out.parent}", *overrides],
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


def _letter_option_benchmarks(tmp_path: Path) -> tuple[Path, Path]:
    """AI2D (options that are letters) and A-OKVQA (COCO images under a relative image_root) in their official
    layouts, and a JSONL of the same questions with the right option's text, for the stand-in teacher to answer
    from: it knows the truth independently of the benchmark readers."""
    from PIL import Image

    def png(path: Path, shade: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (shade, 60, 120)).save(path)

    ai2d, truth = tmp_path / "ai2d", []
    for n in range(4):
        png(ai2d / "images" / f"{n}.png", 10 * n)
        options = ["C", "A", "D", "B"]
        (ai2d / "questions").mkdir(parents=True, exist_ok=True)
        (ai2d / "questions" / f"{n}.png.json").write_text(json.dumps({"imageName": f"{n}.png", "questions": {
            f"Which label is the pupa in diagram {n}?": {"answerTexts": options, "correctAnswer": n,
                                                         "questionId": f"{n}.png-0"}}}))
        truth.append({"id": f"t-ai2d-{n}", "image": str(ai2d / "images" / f"{n}.png"), "choices": options,
                      "question": f"Which label is the pupa in diagram {n}?", "answer": options[n],
                      "answer_type": "multiple_choice"})
    coco, records = tmp_path / "coco" / "val2017", []
    for n in range(3):
        png(coco / f"{n + 1:012d}.jpg", 100 + 10 * n)
        choices = ["dog", "cat", "bird", "cow"]
        records.append({"question_id": f"q{n}", "image_id": n + 1, "question": f"Which animal, {n}?", "choices": choices,
                        "correct_choice_idx": n})
        truth.append({"id": f"t-aok-{n}", "image": str(coco / f"{n + 1:012d}.jpg"), "question": f"Which animal, {n}?",
                      "choices": choices, "answer": choices[n], "answer_type": "multiple_choice"})
    (tmp_path / "aokvqa_v1p0_val.json").write_text(json.dumps(records))
    charts = tmp_path / "charts"  # ChartQA's test/ folder, its images under a relative image_root
    png(charts / "png" / "c0.png", 200)
    (charts / "test_human.json").write_text(json.dumps([{"imgname": "c0.png", "query": "Highest bar?", "label": "42.5"}]))
    truth.append({"id": "t-chart-0", "image": str(charts / "png" / "c0.png"), "question": "Highest bar?",
                  "answer": "42.5", "answer_type": "relaxed"})
    info = tmp_path / "info"  # InfographicVQA, its images under a relative image_root
    png(info / "imgs" / "i0.jpeg", 220)
    (info / "infographicsVQA_val_v1.0_withQT.json").write_text(json.dumps({"data": [
        {"questionId": 1, "question": "Share of teens?", "image_local_name": "i0.jpeg", "answers": ["18%"]}]}))
    truth.append({"id": "t-info-0", "image": str(info / "imgs" / "i0.jpeg"), "question": "Share of teens?",
                  "answer": "18%", "answer_type": "anls"})
    (tmp_path / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    return ai2d, tmp_path / "truth.jsonl"


def test_official_layouts_letter_options_relative_image_root_and_revisions(tmp_path):
    """From the outside: AI2D questions whose options are letters are scored against the right option (the
    right letter scored 0 before), A-OKVQA with a relative image_root has every row (all missing_image before),
    and a redeployed endpoint (another revision) is evaluated anew, nothing read back or taken from the cache."""
    ai2d, truth = _letter_option_benchmarks(tmp_path)
    rel = lambda folder: os.path.relpath(tmp_path / folder, ROOT)  # relative to the job's working directory  # noqa: E731
    config = tmp_path / "bench.yaml"
    config.write_text("evaluate:\n  benchmarks:\n"
                      f"    ai2d: {{format: ai2d, split: train, path: '{ai2d}'}}\n"
                      f"    aokvqa: {{format: aokvqa, split: validation, path: '{tmp_path / 'aokvqa_v1p0_val.json'}', "
                      f"image_root: '{rel('coco')}'}}\n"
                      f"    chartqa: {{format: chartqa, split: test, path: '{tmp_path / 'charts'}', "
                      f"image_root: '{rel('charts/png')}'}}\n"
                      f"    infovqa: {{format: infovqa, split: validation, path: '{tmp_path / 'info'}', "
                      f"image_root: '{rel('info/imgs')}'}}\n"
                      "eval: {max_tokens: 64, styles: [cot]}\n")
    out, log = tmp_path / "eval", tmp_path / "requests.jsonl"
    with LocalTeacher(f"jsonl:{truth}", request_log=log) as endpoint:
        run = lambda revision: _evaluate(out, endpoint.base_url, config, f"evaluate.endpoint.revision={revision}")  # noqa: E731
        first = run("v1")
        assert first.returncode == 0, first.stderr[-3000:]
        results = json.loads((out / "results.json").read_text())["benchmarks"]
        assert results["ai2d"]["questions"] == 4 and results["aokvqa"]["questions"] == 3
        assert results["chartqa"]["questions"] == results["infovqa"]["questions"] == 1
        for name in ("ai2d", "aokvqa", "chartqa", "infovqa"):
            assert results[name]["summary"]["cot"]["all"]["accuracy"] == 1.0, name
        assert len(_requests(log)) == 9
        again = run("v1")
        assert "done earlier" in again.stdout and len(_requests(log)) == 9
        redeployed = run("v2")
        assert redeployed.returncode == 0 and "done earlier" not in redeployed.stdout
        assert len(_requests(log)) == 18  # the new revision's replies are not the old revision's cached ones
        assert json.loads((out / "results.json").read_text())["produced_by"]["revision"] == "v2"


def test_model_folder_with_verifier_and_clear_errors(tmp_path, tiny_qwen2_vl):
    """A model folder with eval.samples and a reference: the paper table and the verifier table; another model
    evaluated into the same folder is evaluated, not read back; a missing benchmark file is named before anything
    runs."""
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
    verifier = json.loads((out / "results.json").read_text())["benchmarks"]["shapes"]["verifier"]["summary"]
    assert {"majority", "best_of_n/policy/sum", "oracle"} <= set(verifier)  # policy == reference: every reward is 0
    first = json.loads((out / "results.json").read_text())["produced_by"]

    # Another model into the same folder (as every exported round is named `model`): evaluated again, not the
    # first model's table read back
    import shutil

    import torch

    from reasoner_ray.models.loading import load_model_and_processor

    other = tmp_path / "r2" / "model"
    model, processor = load_model_and_processor(tiny_qwen2_vl)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    model.save_pretrained(other)
    processor.save_pretrained(other)
    second = subprocess.run([sys.executable, "jobs/evaluate.py", "--config", str(config), "--model", str(other),
                             "--out", str(out), f"run.dir={tmp_path}", "eval.samples=0"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "done earlier" not in second.stdout + second.stderr
    produced = json.loads((out / "results.json").read_text())["produced_by"]
    assert produced["fingerprint"] != first["fingerprint"] and produced["model"] == str(other)
    shutil.rmtree(other)

    missing = subprocess.run([sys.executable, "jobs/evaluate.py", "--model", tiny_qwen2_vl, "--out", str(out),
                              "evaluate.benchmarks={chart: {format: chartqa, split: test, path: /nonexistent}}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith(
        "error: evaluate.benchmarks.chart (format chartqa, path /nonexistent): data path /nonexistent does not exist")
