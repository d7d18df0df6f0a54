"""Ray Train runs with 2 CPU workers and DeepSpeed: SFT with ZeRO-2, DPO with ZeRO-3 killed mid-run and resumed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from reasoner_ray.train.schedule import lr_ratio

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_sft_zero2_trains_exports_and_tracks(sft_zero2_run, tiny_qwen2_vl):
    import torch

    from reasoner_ray.models.loading import load_model_and_processor

    result = sft_zero2_run
    history = _jsonl(result.history_path)
    # 12 rows (3 without rationale) -> 9 CoT + 12 direct = 21 examples -> 5 steps of 4
    assert result.counts["examples_used"] == 21 and result.steps == 5
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5]
    assert all(h["loss"] > 0 for h in history) and history[-1]["consumed_samples"] == 20
    # the lr each step trained at: the project's schedule through DeepSpeed, the first step at the peak (no warmup)
    assert [h["lr"] for h in history] == pytest.approx([1e-4 * lr_ratio(k, 5, 0.03) for k in range(5)])
    out = Path(result.history_path).parent
    assert list((out / "tensorboard" / "sft").glob("events.out.tfevents.*"))
    model, processor = load_model_and_processor(result.model_dir)  # the export loads in transformers
    base, _ = load_model_and_processor(tiny_qwen2_vl)
    trained = dict(model.named_parameters())
    changed = [n for n, p in base.named_parameters() if not torch.equal(p, trained[n])]
    assert any("language_model" in n for n in changed) and any("visual" in n for n in changed)
    assert processor.tokenizer is not None


def test_dpo_zero3_killed_mid_run_resumes_without_repeating_or_skipping(ray_local, tiny_llava, train_data_dir, tmp_path):
    from conftest import _config
    from reasoner_ray.train.dpo import run_dpo

    out = tmp_path / "dpo"
    config = _config(["train.zero_stage=3", "dpo.global_batch_size=2", "dpo.lr=1e-5", "train.checkpoint_every_steps=2",
                      "train.max_failures=2"])
    killed: dict[str, int] = {}

    def kill_rank1_after_step_3():
        deadline = time.time() + 400
        while time.time() < deadline and not killed:
            metrics = out / "metrics.jsonl"
            if metrics.is_file() and any(r["step"] >= 3 for r in _jsonl(metrics)):
                pid = int((out / "workers" / "rank1.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_rank1_after_step_3, daemon=True)
    watcher.start()
    result = run_dpo(config, tiny_llava, str(train_data_dir / "pairs.jsonl"), str(out))
    watcher.join(timeout=1)

    assert killed, "the run finished before the worker could be killed"
    assert int((out / "workers" / "rank1.pid").read_text()) != killed["pid"]  # a new worker group took over
    steps = _jsonl(out / "samples.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 9))  # 16 pairs / 2 per step, each step once
    ids = [i for s in steps for i in s["ids"]]
    assert sorted(ids) == sorted(f"q{i}:{i}" for i in range(16))  # every pair exactly once: none repeated or skipped
    history = _jsonl(result.history_path)
    assert {"rewards/chosen", "rewards/margins", "rewards/accuracies", "logps/chosen"} <= set(history[-1])
    # the resumed steps take up the lr schedule where the checkpoint left it
    lr_by_step = {h["step"]: h["lr"] for h in history}
    assert [lr_by_step[s] for s in range(1, 9)] == pytest.approx([1e-5 * lr_ratio(k, 8, 0.03) for k in range(8)])
    assert result.counts["reference_written"] == 16
    assert (Path(result.model_dir) / "config.json").is_file()
    keys = json.loads((Path(result.model_dir) / "model.safetensors.index.json").read_text())["weight_map"] \
        if (Path(result.model_dir) / "model.safetensors.index.json").is_file() else None
    from safetensors import safe_open

    if keys is None:
        with safe_open(str(Path(result.model_dir) / "model.safetensors"), "pt") as f:
            keys = list(f.keys())
    assert any(".vision_tower.vision_model." in k or k.startswith("vision_tower.vision_model.") for k in keys)


def test_a_gpu_shard_task_releases_its_worker_after_the_call(ray_local):
    """A GPU shard (reference pass, verifier log-probs) runs in a worker that exits after the call, so its CUDA
    context and cached memory go with it; CPU shards keep reusing their workers. Shown with the GPU task's
    release setting on CPU tasks (no GPU here), and the setting checked for the GPU case."""
    from reasoner_ray.train.reference import shard_task

    def _pid(_: int) -> int:  # defined here: pickled by value, the workers cannot import this test file
        return os.getpid()

    gpu_task = shard_task(_pid, gpu=True)
    assert gpu_task._default_options["num_gpus"] == 1 and gpu_task._default_options["max_calls"] == 1
    cpu_task = shard_task(_pid, gpu=False)
    assert cpu_task._default_options.get("max_calls") in (0, None)
    releasing = ray_local.remote(num_cpus=1, max_calls=1)(_pid)  # what the GPU task does, on a CPU
    first, second = ray_local.get(releasing.remote(0)), ray_local.get(releasing.remote(1))
    assert first != second  # a fresh worker per call
    reused = [ray_local.get(cpu_task.remote(i)) for i in range(3)]
    assert len(set(reused)) < 3  # without the release a worker serves several calls
