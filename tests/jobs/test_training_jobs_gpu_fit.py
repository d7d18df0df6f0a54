"""The standalone training jobs refuse GPU asks the cluster cannot meet before anything trains, as the main job's
preflight does (Ray would otherwise wait for the GPUs forever): on this CPU machine, `train.use_gpu=true` exits 2
naming the misfit and the key that turns the check off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("job, inputs", [
    ("jobs/train_sft.py", ["--rows", "{rows}", "--model", "{model}"]),
    ("jobs/train_dpo.py", ["--pairs", "{rows}", "--policy", "{model}"]),
])
def test_a_gpu_job_on_a_cpu_cluster_exits_2_before_training(job, inputs, tiny_qwen2_vl, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("")
    args = [a.format(rows=rows, model=tiny_qwen2_vl) for a in inputs]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, job, *args, "--out", str(tmp_path / "out"), "train.use_gpu=true"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert "the GPU asks do not fit this cluster" in last and "train.check_gpu_fit=false" in last, last
    assert not (tmp_path / "out" / "model").exists()
