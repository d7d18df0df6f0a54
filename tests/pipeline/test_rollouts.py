"""Rollouts through vLLM actors in Ray Data: N samples per question per temperature, a killed actor survived."""

import os
import signal
import threading
import time

import pyarrow.dataset as pads
import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.pipeline.stages.rollouts import rollouts_stage
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


def _samples(folder):
    rows = pads.dataset(str(folder), format="parquet").to_table().to_pylist()
    return {(r["question_id"], r["sample_index"]): r for r in rows}


def test_evaluation_pass_generates_the_next_rounds_rollouts(tmp_path, tiny_qwen2_vl, ray_local):
    """The SFT evaluation's engines also generate round 1's rollouts (one pass, one engine start): the rollouts
    stage adopts them, and they are the samples a rollouts stage of its own gives (per-question seeds). Rollouts
    prefetched for other settings are not adopted."""
    from reasoner_ray.core.data_regime import rollout_source
    from reasoner_ray.pipeline.prefetch import Prefetch
    from reasoner_ray.pipeline.stages.evaluate import eval_stage
    from reasoner_ray.pipeline.stages.rollouts import rollout_plan

    def next_rollouts(config, runner):
        stage = "r1/rollouts"
        return [Prefetch(stage, runner.run_dir.work(stage), tiny_qwen2_vl, rollout_source(config, 1),
                         rollout_plan(config, 1))]

    def config_at(run):
        return build_config({
            "run": {"dir": str(tmp_path / run)},
            "data": {"train": {"format": "easy_vqa", "split": "train", "limit": 6},
                     "eval": {"format": "easy_vqa", "split": "test", "limit": 5}},
            "rollout": {"samples_per_temperature": 2, "temperatures": [1.0], "max_tokens": 8, "batch_size": 4,
                        "max_model_len": 512, "kv_cache_gib": 1},
            "eval": {"max_tokens": 8},
        })

    config = config_at("shared")
    runner = StageRunner(config)
    ev = runner.run("r0/eval", eval_stage(config, tiny_qwen2_vl, 0, next_rollouts(config, runner)))
    assert ev.inputs == 5 and ev.outputs == 10 and ev.extra["also_generated"] == ["r1/rollouts"]
    evaluated = _samples(runner.run_dir.output("r0/eval") / "generated")
    assert len(evaluated) == 10 and {r["style"] for r in evaluated.values()} == {"cot", "direct"}
    assert all(r["round"] == 0 and r["token_ids"] == [] for r in evaluated.values())  # greedy: no log-probs kept
    rec = runner.run("r1/rollouts", rollouts_stage(config, tiny_qwen2_vl, 1))
    assert rec.extra["generated_in"] == "r0/eval" and (rec.inputs, rec.outputs) == (6, 12)
    assert not (runner.run_dir.work("r1/rollouts") / "prefetched").exists()
    shared = _samples(runner.run_dir.output("r1/rollouts"))
    assert all(r["round"] == 1 and "task" not in r and r["token_ids"] for r in shared.values())

    alone_config = config_at("alone")
    alone_runner = StageRunner(alone_config)
    alone = alone_runner.run("r1/rollouts", rollouts_stage(alone_config, tiny_qwen2_vl, 1))
    assert "generated_in" not in alone.extra
    separate = _samples(alone_runner.run_dir.output("r1/rollouts"))
    assert separate.keys() == shared.keys()
    assert [shared[k]["text"] for k in sorted(shared)] == [separate[k]["text"] for k in sorted(separate)]

    # Prefetched under other settings (another top_p): generated anew, with a warning, not adopted.
    stale = config_at("stale")
    stale_runner = StageRunner(stale)
    stale_runner.run("r0/eval", eval_stage(stale, tiny_qwen2_vl, 0, next_rollouts(stale, stale_runner)))
    changed = stale.model_copy(update={"rollout": stale.rollout.model_copy(update={"top_p": 0.9})})
    rec = stale_runner.run("r1/rollouts", rollouts_stage(changed, tiny_qwen2_vl, 1))
    assert "generated_in" not in rec.extra and (rec.inputs, rec.outputs) == (6, 12)
