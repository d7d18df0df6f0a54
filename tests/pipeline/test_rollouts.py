"""Rollouts through vLLM actors in Ray Data: N samples per question per temperature, a killed actor survived."""

import os
import signal
import threading
import time

import pyarrow.dataset as pads
import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.pipeline.generation_stages import rollouts_stage
from reasoner_ray.pipeline.runner import StageRunner

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]


def _config(tmp_path, questions):
    return build_config({
        "run": {"dir": str(tmp_path / "run")},
        "data": {"train": {"format": "easy_vqa", "split": "train", "limit": questions}},
        "rollout": {"samples_per_temperature": 2, "temperatures": [1.0, 1.2], "max_tokens": 16, "batch_size": 2,
                    "max_model_len": 512, "kv_cache_gib": 1, "num_engines": 1},
    })


def _kill_first_actor_after_first_file(out_dir, killed):
    """SIGKILL the rollout actor's process (a descendant of this test's local Ray) once output is flowing."""
    import psutil

    deadline = time.time() + 300
    while time.time() < deadline:
        if any(out_dir.glob("*.parquet")):
            for proc in psutil.Process(os.getpid()).children(recursive=True):
                try:
                    title = " ".join(proc.cmdline())
                except psutil.Error:
                    continue
                if "GenerationActor" in title:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
        time.sleep(0.2)


def test_rollouts_complete_despite_killed_actor(tmp_path, tiny_qwen2_vl, ray_local):
    questions = 16
    config = _config(tmp_path, questions)
    runner = StageRunner(config)
    out_dir = runner.run_dir.output("r1/rollouts")
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first_actor_after_first_file, args=(out_dir, killed), daemon=True)
    killer.start()
    rec = runner.run("r1/rollouts", rollouts_stage(config, tiny_qwen2_vl, 1))
    killer.join(timeout=5)
    assert killed, "the test never killed a rollout actor"
    table = pads.dataset(str(out_dir), format="parquet").to_table().to_pylist()
    assert rec.inputs == questions and rec.outputs == len(table) == questions * 4
    keys = {(r["question_id"], r["sample_index"]) for r in table}
    assert len(keys) == len(table)  # no sample lost or duplicated by the retry
    assert {r["sample_index"] for r in table} == {0, 1, 2, 3}
    assert {(r["sample_index"] // 2, r["temperature"]) for r in table} == {(0, 1.0), (1, 1.2)}
    row = table[0]
    assert row["style"] == "cot" and row["round"] == 1 and row["completion_tokens"] >= 1 and row["answer"]
