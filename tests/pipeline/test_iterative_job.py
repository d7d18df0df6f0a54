"""The main job end to end on a tiny budget: once through `ray job submit` to a real three-node `ray start`
cluster (a head and two workers of one CPU each, so two engines or two training workers must sit on different
nodes); once on that cluster while it loses a node during rollouts and another during DPO training (a
replacement joins); and once run directly while being SIGKILLed during rollouts and during DPO training, each
time restarted. Every run must end with the same per-stage counts (no row lost or duplicated).

The killed run starts from a copy of the submitted run's distill, SFT and SFT-evaluation stages (its manifest
lists those three as done), so the kills land in round 1 without paying for distillation and SFT twice; killing
and resuming distillation and SFT themselves is tested in tests/distill and tests/train."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as pads
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_cluster import (ROOT, add_node, cluster_state, kill_node, local_cluster, submit, submit_command,  # noqa: E402
                         wait_for_worker_node_running)

from reasoner_ray.core.rundir import stage_dir  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]

# Small enough for CI, big enough that SFT learns the answer format and yes/no questions give pairs.
TINY = ["data.train.limit=1000", "sft.epochs=1", "rollout.limit=24", "rollout.samples_per_temperature=2",
        "rollout.max_tokens=64", "data.eval.limit=24", "eval.max_tokens=64", "rounds=1", "dpo.global_batch_size=2",
        "dpo.epochs=6",  # a few pairs only, so several steps to kill and resume in
        "train.log_every_steps=1", "pairs.accuracy_band=[0.0,1.0]", "rollout.kv_cache_gib=1", "eval.samples=2"]
JOB = [sys.executable, "jobs/iterative_dpo.py", "--config", "configs/easy_vqa.yaml"]
MULTINODE = ["rollout.num_engines=2"]  # one engine per node: each node has one CPU


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
def cluster():
    with local_cluster(num_cpus=1, worker_cpus=(1, 1)) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def submitted_run(cluster, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("submitted") / "run"
    out = submit(cluster, ["python", "jobs/iterative_dpo.py", "--config", "configs/easy_vqa.yaml",
                           f"run.dir={run_dir}", *TINY, *MULTINODE], timeout=1500)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return run_dir, out.stdout, cluster_state(cluster)


def test_job_submit_runs_the_whole_pipeline(submitted_run):
    run_dir, stdout, _ = submitted_run
    counts = _counts(run_dir)
    expected = ["distill", "sft", "r0/eval"] + [f"r1/{s}" for s in ("rollouts", "rewards", "pairs", "reference", "dpo", "eval",
                                                                   "verify")]
    assert list(counts) == expected
    assert counts["distill"] == (1000, 1000)  # the stand-in teacher answers right unless told otherwise
    assert counts["r1/rollouts"] == (24, 24 * 4) and counts["r1/rewards"] == (96, 96)
    # Round 1's rollouts came from the SFT evaluation's engines and round 1's verifier samples from round 1's
    # evaluation's, each in the same pass (rollout.reuse_eval_engines).
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert stages["r0/eval"]["extra"]["also_generated"] == ["r1/rollouts"]
    assert stages["r1/rollouts"]["extra"]["generated_in"] == "r0/eval"
    assert stages["r1/eval"]["extra"]["also_generated"] == ["r1/verify"]
    assert stages["r1/verify"]["extra"]["generated_in"] == "r1/eval"
    assert counts["r1/pairs"][1] > 0, "SFT should learn enough for some pairs"
    assert counts["r1/reference"][1] == counts["r1/pairs"][1] == counts["r1/dpo"][0]
    # The pairs carry what the SFT model sampled; the reference (that same model) is taken from it where the text
    # re-tokenizes to the sampled tokens, the rest computed: every pair counted once.
    pairs = [json.loads(line) for line in (run_dir / "rounds" / "r1" / "pairs" / "output" / "pairs.jsonl").open()]
    assert all(p["chosen_sampled"]["token_ids"] and p["rejected_sampled"]["token_ids"] for p in pairs)
    assert {p["sampling"]["model"] for p in pairs} == {str((run_dir / "sft" / "output" / "model").resolve())}
    reference = json.loads((run_dir / "manifest.json").read_text())["stages"]["r1/reference"]["extra"]["counts"]
    assert reference["from_rollouts"] + reference["from_pass"] == counts["r1/pairs"][1], reference
    assert counts["r1/verify"] == (24, 24 * 2)  # the DPO model ranks 2 sampled chains per evaluation question
    assert "| round | pairs | CoT acc. (%)" in stdout and "report: " in stdout
    report = run_dir / "report" / "output" / "report.md"
    assert report.is_file() and (run_dir / "report" / "output" / "accuracy.png").is_file()


def test_engines_and_training_workers_spread_over_the_nodes(submitted_run, cluster):
    """Ray's state API after the job: the vLLM engines and the Ray Train workers ran on two or more nodes, and
    each worker node kept its own Ray temp folder (logs and sockets)."""
    actors = submitted_run[2]["actors"]
    engine_nodes = {a["node_id"] for a in actors if "GenerationActor" in a["name"]}
    train_nodes = {a["node_id"] for a in actors if "RayTrainWorker" in a["name"]}
    assert len(engine_nodes) >= 2, engine_nodes
    assert len(train_nodes) >= 2, train_nodes
    for node in cluster["nodes"]:
        assert list(Path(node["temp"]).glob("session_*/logs/raylet.out")), f"no raylet log under {node['temp']}"


PRE_ROUND_STAGES = ("distill", "sft", "r0/eval")


def _seed_from(source: Path, run_dir: Path) -> None:
    """A run directory whose manifest says the pre-round stages are done, with their folders copied over."""
    manifest = json.loads((source / "manifest.json").read_text())
    for stage in PRE_ROUND_STAGES:
        shutil.copytree(source / stage_dir(stage) / "output", run_dir / stage_dir(stage) / "output")
    manifest = {"stages": {k: manifest["stages"][k] for k in PRE_ROUND_STAGES}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def _counts_so_far(run_dir: Path) -> dict:
    return _counts(run_dir) if (run_dir / "manifest.json").is_file() else {}


def _lose_nodes_during_rollouts_and_dpo(cluster, run_dir: Path, lost: list[str], stop: threading.Event) -> None:
    """Watch the run directory: once rollouts start, kill the worker node of a vLLM engine; once DPO has logged
    a step, kill the worker node of a training worker and add a replacement node. An error is put in `lost`,
    where the test's assertion shows it (a thread's exception would not fail the test)."""
    try:
        _watch_and_kill(cluster, run_dir, lost, stop)
    except Exception as exc:  # noqa: BLE001 - reported through `lost`
        lost.append(f"watcher failed: {exc!r}")


def _watch_and_kill(cluster, run_dir: Path, lost: list[str], stop: threading.Event) -> None:
    deadline = time.time() + 1200
    while not (run_dir / "rounds/r1/rollouts").exists():
        if stop.is_set() or time.time() > deadline:
            return
        time.sleep(0.2)
    # An engine starting (its constructor builds vLLM, ~10 s) or generating: the stage's 24 questions take only
    # seconds to generate, so waiting for a fully started engine can come too late.
    kill_node(wait_for_worker_node_running(cluster, "GenerationActor"))
    lost.append("rollouts" if "r1/rollouts" not in _counts_so_far(run_dir) else "rollouts (too late)")
    metrics = run_dir / "rounds/r1/dpo/work/metrics.jsonl"
    while not (metrics.is_file() and metrics.read_text().strip()):
        if stop.is_set() or time.time() > deadline:
            return
        time.sleep(0.1)
    kill_node(wait_for_worker_node_running(cluster, "RayTrainWorker", timeout=60))
    lost.append("dpo" if "r1/dpo" not in _counts_so_far(run_dir) else "dpo (too late)")
    add_node(cluster, 1)  # as an autoscaler would


def test_losing_nodes_during_rollouts_and_dpo_loses_and_repeats_nothing(submitted_run, cluster, tmp_path):
    """A worker node holding a vLLM engine dies during rollouts: the stage finishes on the nodes left. Then a node
    holding a training worker dies during DPO and a replacement joins: training resumes from its last checkpoint.
    The run ends with the undisturbed run's counts, each (question, sample) once and each pair trained once per
    epoch."""
    reference_counts = _counts(submitted_run[0])
    run_dir = tmp_path / "run"
    _seed_from(submitted_run[0], run_dir)
    cmd, env = submit_command(cluster, ["python", *JOB[1:], f"run.dir={run_dir}", *TINY, *MULTINODE,
                                        "train.checkpoint_every_steps=1"])
    lost: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_lose_nodes_during_rollouts_and_dpo, args=(cluster, run_dir, lost, stop))
    watcher.start()
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    finally:
        stop.set()
        watcher.join(timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert lost == ["rollouts", "dpo"], out.stdout[-4000:]
    assert "[dpo] resuming from the checkpoint at step" in out.stdout  # a new worker group went on from there
    assert _counts(run_dir) == reference_counts
    rollouts = pads.dataset(str(run_dir / "rounds/r1/rollouts/output"), format="parquet").to_table().to_pylist()
    assert len({(r["question_id"], r["sample_index"]) for r in rollouts}) == len(rollouts) == 96
    metrics = Path(json.loads((run_dir / "manifest.json").read_text())["stages"]["r1/dpo"]["extra"]["metrics_path"])
    steps = [json.loads(line) for line in (metrics.parent / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    ids = Counter(i for s in steps for i in s["ids"])
    assert len(ids) == reference_counts["r1/pairs"][1] and set(ids.values()) == {6}  # once per epoch, none skipped


def test_sigkill_and_restart_gives_the_same_counts(submitted_run, tmp_path):
    reference_counts = _counts(submitted_run[0])
    run_dir = tmp_path / "run"
    _seed_from(submitted_run[0], run_dir)
    args = JOB + [f"run.dir={run_dir}", *TINY]
    assert _run_until(args, "stage r1/rollouts    starting", delay=8), "never reached rollouts"
    # the restart skips what is done and resumes rollouts; DPO starts after the completed rewards, pairs, reference
    assert _run_until(args, "[dpo] step", delay=1), "never reached DPO training"
    assert not _run_until(args, None)
    assert _counts(run_dir) == reference_counts
    rollouts = pads.dataset(str(run_dir / "rounds/r1/rollouts/output"), format="parquet").to_table().to_pylist()
    assert len({(r["question_id"], r["sample_index"]) for r in rollouts}) == len(rollouts) == 96


def test_redo_of_a_middle_stage_with_fewer_pairs_than_a_global_batch(submitted_run, tmp_path):
    """`--redo r1/dpo` on a finished run: stages before it are kept as they are, r1/dpo and every stage after it
    run again. The global batch is set above the round's pairs (one epoch): DPO trains one smaller step and says
    so."""
    source = submitted_run[0]
    before = json.loads((source / "manifest.json").read_text())["stages"]
    pairs = before["r1/pairs"]["outputs"]
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    args = [*JOB, "--redo", "r1/dpo", f"run.dir={run_dir}", *TINY, f"dpo.global_batch_size={pairs + 1}",
            "dpo.epochs=1"]
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
