"""Acceptance (issue 4, resume): SIGKILL the distillation job about half-way, run it again. The teacher's own
request log shows no repeated request for a row completed before the kill, and the final output equals an
uninterrupted run's, file for file. The job runs as `jobs/distill.py` in its own process group (with the Ray it
starts), which is what gets killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasoner_ray.distill.cache import ResponseCache
from reasoner_ray.teacher.launch import LocalTeacher

ROOT = Path(__file__).resolve().parents[2]
ROWS = 600
OUTPUT_FILES = ("rows.jsonl", "rejected.jsonl", "sft/easy_vqa/cot.none.jsonl", "sft/easy_vqa/direct.none.jsonl")


def _job(base_url: str, cache: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "jobs" / "distill.py"), "--out", str(out), f"teacher.base_url={base_url}",
            "teacher.start_local=false", "teacher.concurrency=16", "teacher.max_retries=12", "teacher.backoff_base_s=0.02",
            "teacher.backoff_max_s=0.2", f"data.train.limit={ROWS}", f"distill.cache_dir={cache}", f"run.dir={out.parent}"]


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "ab") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, timeout=600)


def _request_keys(log: Path, start: int = 0) -> list[str]:
    return [json.loads(line)["key"] for line in log.read_text().splitlines()[start:]]


@pytest.mark.ray
@pytest.mark.slow
def test_sigkill_half_way_then_resume(tmp_path):
    requests = tmp_path / "requests.jsonl"
    cache, out, job_log = tmp_path / "cache", tmp_path / "resumed" / "out", tmp_path / "job.log"
    with LocalTeacher("easy_vqa:train", latency_ms=50, retry_after_s=0.1, request_log=requests,
                      p429=0.2, p5xx=0.05, pmalformed=0.05, pwrong=0.1) as teacher:
        with open(job_log, "ab") as fh:
            job = subprocess.Popen(_job(teacher.base_url, cache, out), stdout=fh, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + 300
        while len(ResponseCache(cache).keys()) < ROWS // 2:
            assert job.poll() is None, f"job ended before the kill; see {job_log}"
            assert time.monotonic() < deadline, "job too slow to reach half-way"
            time.sleep(0.05)
        os.killpg(job.pid, signal.SIGKILL)  # the driver and every Ray process it started
        job.wait()
        completed = ResponseCache(cache).keys()
        assert ROWS // 2 <= len(completed) < ROWS and not (out / "summary.json").exists()
        sent_before = len(requests.read_text().splitlines())

        _run(_job(teacher.base_url, cache, out), job_log)  # resume
        resent = set(_request_keys(requests, sent_before)) & completed
        assert not resent, f"{len(resent)} requests completed before the kill were sent again"
        assert len(_request_keys(requests, sent_before)) < sent_before  # the resume did only the remainder

        baseline = tmp_path / "baseline" / "out"
        _run(_job(teacher.base_url, tmp_path / "baseline-cache", baseline), job_log)  # uninterrupted, fresh cache

    for name in OUTPUT_FILES:
        assert (out / name).read_text() == (baseline / name).read_text(), name
    resumed, uninterrupted = (json.loads((d / "summary.json").read_text()) for d in (out, baseline))
    assert resumed["input_rows"] == uninterrupted["input_rows"] == ROWS
    assert resumed["served_from_cache"] >= len(completed) and uninterrupted["served_from_cache"] == 0
