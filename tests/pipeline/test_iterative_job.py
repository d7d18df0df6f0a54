"""The main job end to end on a tiny budget: once through `ray job submit` to a real `ray start` cluster, and once
run directly while being SIGKILLed during rollouts, between stages and during DPO training, then restarted.
Both runs must end with the same per-stage counts (no row lost or duplicated).

The killed run starts from a copy of the submitted run's distill, SFT and SFT-evaluation stages (its manifest
lists those three as done), so the kills land in round 1 without paying for distillation and SFT twice; killing
and resuming distillation and SFT themselves is tested in tests/distill and tests/train."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_cluster import ROOT, local_cluster, submit  # noqa: E402

from reasoner_ray.core.rundir import stage_dir  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]

# Small enough for CI, big enough that SFT learns the answer format and yes/no questions give pairs.
TINY = ["data.train.limit=1000", "sft.epochs=1", "rollout.limit=24", "rollout.samples_per_temperature=2",
        "rollout.max_tokens=64", "data.eval.limit=24", "eval.max_tokens=64", "rounds=1", "dpo.global_batch_size=4",
        "train.log_every_steps=1", "pairs.accuracy_band=[0.0,1.0]", "rollout.kv_cache_gib=1", "eval.samples=2"]
JOB = [sys.executable, "jobs/iterative_dpo.py", "--config", "configs/quickstart.yaml"]


def _counts(run_dir: Path) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {k: (v["inputs"], v["outputs"]) for k, v in manifest["stages"].items()}


def _run_until(args, trigger, delay=0.0, timeout=900):
    """Run the job; when a log line contains `trigger`, wait `delay` s and SIGKILL its whole process group.
    Returns True if it was killed, False if it finished first."""
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)
    deadline = time.time() + timeout
    try:
        for line in proc.stdout:
            if trigger and trigger in line:
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            if time.time() > deadline:
                raise TimeoutError(f"job did not reach {trigger!r} in {timeout} s")
        assert proc.wait() == 0, f"job failed with {proc.returncode}"
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def submitted_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("submitted") / "run"
    with local_cluster() as cluster:
        out = submit(cluster, ["python", "jobs/iterative_dpo.py", "--config", "configs/quickstart.yaml",
                               f"run.dir={run_dir}", *TINY], timeout=1500)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return run_dir, out.stdout


def test_job_submit_runs_the_whole_pipeline(submitted_run):
    run_dir, stdout = submitted_run
    counts = _counts(run_dir)
    expected = ["distill", "sft", "eval_sft"] + [f"r1/{s}" for s in ("rollouts", "rewards", "pairs", "reference", "dpo", "eval",
                                                                   "verify")]
    assert list(counts) == expected
    assert counts["distill"] == (1000, 1000)  # the stand-in teacher answers right unless told otherwise
    assert counts["r1/rollouts"] == (24, 24 * 4) and counts["r1/rewards"] == (96, 96)
    assert counts["r1/pairs"][1] > 0, "SFT should learn enough for some pairs"
    assert counts["r1/reference"][1] == counts["r1/pairs"][1] == counts["r1/dpo"][0]
    assert counts["r1/verify"] == (24, 24 * 2)  # the DPO model ranks 2 sampled chains per evaluation question
    assert "| round | pairs | CoT acc. (%)" in stdout and "report: " in stdout
    report = run_dir / "report" / "output" / "report.md"
    assert report.is_file() and (run_dir / "report" / "output" / "accuracy.png").is_file()


PRE_ROUND_STAGES = ("distill", "sft", "eval_sft")


def _seed_from(source: Path, run_dir: Path) -> None:
    """A run directory whose manifest says the pre-round stages are done, with their folders copied over."""
    manifest = json.loads((source / "manifest.json").read_text())
    for stage in PRE_ROUND_STAGES:
        shutil.copytree(source / stage_dir(stage) / "output", run_dir / stage_dir(stage) / "output")
    manifest = {"stages": {k: manifest["stages"][k] for k in PRE_ROUND_STAGES}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def test_sigkill_and_restart_gives_the_same_counts(submitted_run, tmp_path):
    reference_counts = _counts(submitted_run[0])
    run_dir = tmp_path / "run"
    _seed_from(submitted_run[0], run_dir)
    args = JOB + [f"run.dir={run_dir}", *TINY]
    assert _run_until(args, "stage r1/rollouts    starting", delay=8), "never reached rollouts"
    assert _run_until(args, "stage r1/rewards     done"), "never reached the end of rewards"
    assert _run_until(args, "[dpo] step", delay=1), "never reached DPO training"
    assert not _run_until(args, None)
    assert _counts(run_dir) == reference_counts
    rollouts = pads.dataset(str(run_dir / "rounds/r1/rollouts/output"), format="parquet").to_table().to_pylist()
    assert len({(r["question_id"], r["sample_index"]) for r in rollouts}) == len(rollouts) == 96


def test_redo_of_a_middle_stage_with_fewer_pairs_than_a_global_batch(submitted_run, tmp_path):
    """`--redo r1/dpo` on a finished run: stages before it are kept as they are, r1/dpo and every stage after it
    run again. The global batch is set above the round's pairs: DPO trains one smaller step and says so."""
    source = submitted_run[0]
    before = json.loads((source / "manifest.json").read_text())["stages"]
    pairs = before["r1/pairs"]["outputs"]
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    args = [*JOB, "--redo", "r1/dpo", f"run.dir={run_dir}", *TINY, f"dpo.global_batch_size={pairs + 1}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    after = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert list(after) == list(before)
    redone = ["r1/dpo", "r1/eval", "r1/verify"]
    assert all(after[s]["finished_at"] == before[s]["finished_at"] for s in before if s not in redone)
    assert all(after[s]["finished_at"] > before[s]["finished_at"] for s in redone)
    assert "redoing r1/dpo, r1/eval, r1/verify" in out.stdout and "completed with other settings" not in out.stdout
    dpo = after["r1/dpo"]
    assert dpo["inputs"] == pairs and dpo["outputs"] == 1  # one step on what there is
    assert f"is less than one global batch of {pairs + 1}: training one step of" in out.stdout
    assert dpo["config"]["dpo.global_batch_size"] == pairs + 1
