"""The stage runner skips completed stages, redoes an interrupted one from clean output, keeps work/;
the report renders a table and plots from a manifest."""

import json

import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.core.errors import PreflightError, StageFailed
from reasoner_ray.pipeline.report import write_report
from reasoner_ray.pipeline.runner import StageCounts, StageRunner


def test_runner_skips_done_and_cleans_partial_output(tmp_path):
    config = build_config({"run": {"dir": str(tmp_path / "run")}})
    calls = []

    def ok(io):
        calls.append(io.name)
        (io.output / "rows.txt").write_text("a\nb\n")
        (io.work / "cache").write_text("kept")
        return StageCounts(2, 2)

    def crash(io):
        (io.output / "partial.txt").write_text("half")
        (io.work / "ckpt").write_text("step 5")
        raise RuntimeError("killed")

    runner = StageRunner(config)
    runner.run("distill", ok)
    with pytest.raises(StageFailed, match="stage sft failed: RuntimeError: killed") as failed:
        runner.run("sft", crash)
    assert isinstance(failed.value.cause, RuntimeError) and failed.value.exit_code == 1
    assert not runner.manifest.done("sft")  # a failed stage is not recorded: the same command runs it again
    # A new job on the same run dir: distill skipped, sft starts with clean output but its work/ kept.
    runner2 = StageRunner(config)
    seen = {}

    def resume(io):
        seen["partial"] = (io.output / "partial.txt").exists()
        seen["ckpt"] = (io.work / "ckpt").read_text()
        return StageCounts(4, 1)

    runner2.run("distill", ok)
    rec = runner2.run("sft", resume)
    assert calls == ["distill"] and seen == {"partial": False, "ckpt": "step 5"}
    assert rec.inputs == 4 and json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["sft"]["outputs"] == 1


def _three_stages(runner, calls):
    def stage(io):
        calls.append(io.name)
        (io.output / "out.txt").write_text(io.name)
        (io.work / "ckpt").write_text("final")
        return StageCounts(1, 1)

    for name in ("distill", "sft", "r0/eval"):
        runner.run(name, stage)


def test_changed_config_names_the_stale_stages_and_the_redo(tmp_path, caplog):
    run = {"dir": str(tmp_path / "run")}
    _three_stages(StageRunner(build_config({"run": run})), [])
    with caplog.at_level("WARNING"):
        runner = StageRunner(build_config({"run": run, "sft": {"lr": 1e-4}, "eval": {"max_tokens": 32},
                                           "teacher": {"concurrency": 8}}))  # concurrency: not an input of any stage
    assert runner.stale == ["sft", "r0/eval"]
    text = caplog.text
    assert "stage sft completed with other settings (sft.lr: 5e-06 -> 0.0001)" in text
    assert "eval.max_tokens: 256 -> 32" in text and "--redo sft" in text and "distill completed" not in text


def test_redo_forgets_the_stage_and_all_after_it_and_clears_their_work(tmp_path):
    config = build_config({"run": {"dir": str(tmp_path / "run")}})
    calls = []
    _three_stages(StageRunner(config), calls)
    runner = StageRunner(config, redo="sft")
    assert list(runner.manifest.stages) == ["distill"]
    assert not (tmp_path / "run" / "sft").exists() and (tmp_path / "run" / "distill" / "work" / "ckpt").exists()
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]
    assert list(on_disk) == ["distill"]  # saved before the folders are cleared
    _three_stages(runner, calls)
    assert calls == ["distill", "sft", "r0/eval", "sft", "r0/eval"]
    with pytest.raises(PreflightError, match="--redo dpo: not a stage name; completed stages of .*: distill, sft, r0/eval"):
        StageRunner(config, redo="dpo")
    assert StageRunner(config, redo="r1/dpo").manifest.done("r0/eval")  # not completed: nothing dropped


def test_redo_also_clears_an_unfinished_later_stage(tmp_path):
    """`--redo sft` while r1/dpo was half-trained: its checkpoints were trained on the old SFT's pairs and must not
    be resumed (nor, at its last step, re-exported)."""
    config = build_config({"run": {"dir": str(tmp_path / "run")}})
    runner = StageRunner(config)
    _three_stages(runner, [])

    def half_trained(io):
        (io.work / "checkpoint_step_7").write_text("trained on the old pairs")
        raise RuntimeError("killed")

    with pytest.raises(StageFailed):
        runner.run("r1/dpo", half_trained)
    assert (tmp_path / "run" / "rounds" / "r1" / "dpo" / "work" / "checkpoint_step_7").exists()
    StageRunner(config, redo="sft")
    assert not (tmp_path / "run" / "rounds" / "r1" / "dpo").exists()
    assert (tmp_path / "run" / "distill" / "work" / "ckpt").exists()


def test_an_unfinished_stage_started_with_other_settings_starts_afresh(tmp_path, caplog):
    run = {"dir": str(tmp_path / "run")}

    def half_trained(io):
        (io.work / "checkpoint").write_text("lr 5e-6")
        raise RuntimeError("killed")

    with pytest.raises(StageFailed):
        StageRunner(build_config({"run": run})).run("sft", half_trained)
    seen = []

    def resume(io):
        seen.append((io.work / "checkpoint").exists())
        return StageCounts(1, 1)

    with pytest.raises(StageFailed):  # same settings: the checkpoint is resumed
        StageRunner(build_config({"run": run})).run("sft", lambda io: (seen.append((io.work / "checkpoint").exists()),
                                                                         half_trained(io)))
    with caplog.at_level("WARNING"):
        StageRunner(build_config({"run": run, "sft": {"lr": 1e-4}})).run("sft", resume)
    assert seen == [True, False]
    assert "stage sft: an unfinished attempt ran with other settings (sft.lr: 5e-06 -> 0.0001)" in caplog.text


def test_file_uri_run_dir_goes_through_pyarrow(tmp_path):
    uri = f"file://{tmp_path / 'remote'}"
    config = build_config({"run": {"dir": uri}})
    runner = StageRunner(config)

    def write(io):
        (io.output / "x.jsonl").write_text("{}\n")
        return StageCounts(1, 1)

    runner.run("distill", write)
    assert (tmp_path / "remote" / "distill" / "output" / "x.jsonl").read_text() == "{}\n"
    assert "distill" in json.loads((tmp_path / "remote" / "manifest.json").read_text())["stages"]


def test_a_stage_pushed_again_after_a_kill_leaves_no_stale_remote_files(tmp_path):
    """Killed after (or during) the push and before the manifest, a rerun writes other files: the remote stage
    must hold only the rerun's, or a node that pulls it later reads both sets (duplicated rollouts)."""
    from reasoner_ray.storage import RunDir

    uri, stage = f"file://{tmp_path / 'remote'}", "r1/rollouts"
    first = RunDir(uri, mirror_root=tmp_path / "node1")
    first.begin(stage)
    for i in range(3):
        (first.output(stage) / f"part-{i}.parquet").write_text("old")
    (first.work(stage) / "checkpoint").write_text("kept across restarts")
    first.commit(stage)  # pushed, then killed: no manifest entry

    rerun = RunDir(uri, mirror_root=tmp_path / "node1")
    rerun.begin(stage)
    (rerun.output(stage) / "part-new.parquet").write_text("new")
    rerun.commit(stage)
    remote = tmp_path / "remote" / "rounds" / "r1" / "rollouts"
    assert sorted(p.name for p in (remote / "output").iterdir()) == ["part-new.parquet"]
    assert (remote / "work" / "checkpoint").read_text() == "kept across restarts"

    other_node = RunDir(uri, mirror_root=tmp_path / "node2")
    other_node.ensure_local(stage)
    assert sorted(p.name for p in other_node.output(stage).iterdir()) == ["part-new.parquet"]


def test_report_table_and_plots(tmp_path):
    from reasoner_ray.core.rundir import Manifest

    metrics = tmp_path / "m.jsonl"
    metrics.write_text("\n".join(json.dumps({"step": i, "rewards/margins": 0.1 * i}) for i in range(10)))
    m = Manifest()
    m.record("r0/eval", 100, 200, 12.0, cot={"accuracy": 0.7, "stderr": 0.05}, direct={"accuracy": 0.6, "stderr": 0.05})
    m.record("r1/pairs", 80, 30, 1.0, stats={"dropped_all_correct": 20, "dropped_all_wrong": 5})
    m.record("r1/dpo", 30, 10, 40.0, metrics_path=str(metrics))
    m.record("r1/eval", 100, 200, 11.0, cot={"accuracy": 0.72, "stderr": 0.04}, direct={"accuracy": 0.61, "stderr": 0.05})
    path = write_report(m, 1, tmp_path / "report", "test run")
    text = path.read_text()
    assert "| sft | - | 70.0 ± 5.0 | 60.0 ± 5.0 |" in text
    assert "| 1 | 30 | 72.0 ± 4.0 | 61.0 ± 5.0 | 0.700 |" in text  # mean margin of the last 5 steps (0.5..0.9)
    for png in ("accuracy.png", "margins.png", "no_pair_reasons.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
