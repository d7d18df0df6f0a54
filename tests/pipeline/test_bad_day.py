"""The main job on a bad day, run as a user runs it (a subprocess; its exit code and last line): an unreachable
teacher then a fixed one, a partial outage, a teacher whose every answer is wrong, two jobs on one run directory
and a SIGKILLed holder, a changed config and `--redo`. The job runs distillation only (sft.enabled=false,
rounds=0), which is where these failures happen; `--redo` of a middle stage and a round with fewer pairs than a
global batch are in test_iterative_job.py, on a whole run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_cluster import ROOT  # noqa: E402

from reasoner_ray.teacher.launch import LocalTeacher  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROWS = 40
JOB = [sys.executable, "jobs/iterative_dpo.py", "--config", "configs/easy_vqa.yaml"]


def _overrides(run_dir: Path, base_url: str, *more: str) -> list[str]:
    return [f"run.dir={run_dir}", f"teacher.base_url={base_url}", "teacher.start_local=false", "sft.enabled=false",
            "rounds=0", f"data.train.limit={ROWS}", "teacher.backoff_base_s=0.05", "teacher.backoff_max_s=0.2", *more]


def _env() -> dict[str, str]:
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    return env


def _job(run_dir: Path, base_url: str, *more: str, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*JOB, *flags, *_overrides(run_dir, base_url, *more)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _stages(run_dir: Path) -> dict[str, dict]:
    path = run_dir / "manifest.json"
    return json.loads(path.read_text())["stages"] if path.exists() else {}


def _requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_unreachable_teacher_fails_in_preflight_and_the_same_command_recovers(tmp_path):
    run = tmp_path / "run"
    with socket.socket() as closed:  # bound, never listening: refuses connections, and nothing else can take it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1"
        down = _job(run, url)
    assert down.returncode == 2, down.stderr[-2000:]
    line = _last_line(down)
    assert line.startswith(f"error: stage distill failed: teacher preflight: the teacher at teacher.base_url={url} "
                           "cannot be reached (ConnectionRefusedError"), line
    assert line.endswith("start it, or fix teacher.base_url")
    assert "Traceback" not in down.stderr + down.stdout  # the traceback is in the run's log, not on the console
    assert "Traceback" in (run / "logs" / "driver.log").read_text()
    assert "distill" not in _stages(run)

    log = tmp_path / "requests.jsonl"
    with LocalTeacher("easy_vqa:train", port=port, request_log=log):
        fixed = _job(run, url)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    distill = _stages(run)["distill"]
    assert (distill["inputs"], distill["outputs"]) == (ROWS, ROWS)
    assert len(_requests(log)) == ROWS  # the preflight's request is one row's own, not an extra one

    # A changed config on the completed run: the stage it makes stale is named with the key, and the --redo.
    changed = _job(run, url, "teacher.temperature=0.5")  # no teacher needed: distill is done
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "stage distill completed with other settings (teacher.temperature: 0.7 -> 0.5)" in changed.stdout
    assert "the same command with --redo distill" in changed.stdout

    # --redo reruns the stage without deleting anything by hand, and the teacher's cache is kept: nothing is sent.
    with LocalTeacher("easy_vqa:train", port=port, request_log=log):
        redone = _job(run, url, flags=("--redo", "distill"))
    assert redone.returncode == 0, redone.stderr[-2000:]
    assert "redoing distill" in redone.stdout and f"cached {ROWS}" in redone.stdout
    assert len(_requests(log)) == ROWS and _stages(run)["distill"]["finished_at"] > distill["finished_at"]


def test_partial_outage_fails_the_stage_and_the_rerun_sends_only_the_failed_rows(tmp_path):
    run, first_log, second_log = tmp_path / "run", tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    with LocalTeacher("easy_vqa:train", p5xx=0.3, request_log=first_log) as teacher:
        outage = _job(run, teacher.base_url, "teacher.max_retries=0")
    assert outage.returncode == 1, outage.stderr[-2000:]
    line = _last_line(outage)
    sent = _requests(first_log)
    answered = {r["key"] for r in sent if r["status"] == 200}
    failed = {r["key"] for r in sent} - answered
    assert 0 < len(failed) < ROWS
    assert line.startswith(f"error: stage distill failed: {len(failed)} of {ROWS} rows got no answer from the teacher "
                           f"(teacher_server_error {len(failed)}), more than distill.max_failed_fraction=0.01 allows"), line
    assert line.endswith(f"run the same command again; only those {len(failed)} rows are sent again")
    assert "distill" not in _stages(run)

    with LocalTeacher("easy_vqa:train", request_log=second_log) as teacher:
        rerun = _job(run, teacher.base_url, "teacher.max_retries=0")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resent = [r["key"] for r in _requests(second_log)]
    assert sorted(resent) == sorted(failed)  # each failed row once, no answered row again
    assert (_stages(run)["distill"]["inputs"], _stages(run)["distill"]["outputs"]) == (ROWS, ROWS)


def test_no_verified_row_stops_the_job_before_sft(tmp_path):
    run = tmp_path / "run"
    with LocalTeacher("easy_vqa:train", pwrong=1.0) as teacher:
        wrong = _job(run, teacher.base_url, "sft.enabled=true")
    assert wrong.returncode == 1, wrong.stderr[-2000:]
    line = _last_line(wrong)
    assert line.startswith(f"error: stage distill failed: no verified rows, so there is nothing to train on: all {ROWS} "
                           f"rows were rejected (wrong_answer {ROWS}; see "), line
    assert "the teacher's final answers disagreed with the annotations" in line
    assert "stage sft" not in wrong.stdout and "distill" not in _stages(run)


def test_second_job_is_refused_and_a_sigkilled_holder_leaves_no_lock(tmp_path):
    run = tmp_path / "run"
    with LocalTeacher("easy_vqa:train", latency_ms=2000) as slow:
        holder = subprocess.Popen([*JOB, *_overrides(run, slow.base_url, "teacher.concurrency=1")], cwd=ROOT,
                                  env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
        try:
            deadline = time.time() + 300
            for line in holder.stdout:
                if "stage distill        starting" in line:
                    break
                assert time.time() < deadline and holder.poll() is None, "the first job never started distilling"
            second = _job(run, slow.base_url)
            assert second.returncode == 3, second.stderr[-2000:]
            line = _last_line(second)
            assert line.startswith(f"error: run directory {run} is in use by another job (pid {holder.pid} on "), line
            assert "jobs/iterative_dpo.py" in line and line.endswith("or set run.dir to another folder")
        finally:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    with LocalTeacher("easy_vqa:train") as teacher:
        after_kill = _job(run, teacher.base_url)
    assert after_kill.returncode == 0, after_kill.stderr[-2000:]
    assert _stages(run)["distill"]["outputs"] == ROWS
