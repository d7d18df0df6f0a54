"""Accuracy with standard error (worked out by hand) and the run directory's stage map and manifest."""

import math

import pytest

from reasoner_ray.core.metrics import accuracy, majority_baseline, summarize
from reasoner_ray.core.rundir import Manifest, round_stage, stage_dir


def test_accuracy_and_stderr_worked_out():
    # 3 of 4 correct: mean 0.75; sample variance = (3*(0.25)^2 + 0.75^2)/3 = 0.25; se = sqrt(0.25/4) = 0.25
    acc = accuracy([1, 1, 1, 0])
    assert acc.n == 4 and acc.mean == 0.75 and math.isclose(acc.stderr, 0.25)
    assert accuracy([]).n == 0 and accuracy([0.5]).stderr == 0.0


def test_summarize_by_style_and_type():
    recs = [{"style": "cot", "answer_type": "yes_no", "value": 1.0}, {"style": "cot", "answer_type": "open", "value": 0.0},
            {"style": "direct", "answer_type": "open", "value": 1.0}]
    s = summarize(recs)
    assert s["cot"]["all"]["accuracy"] == 0.5 and s["cot"]["yes_no"]["n"] == 1 and s["direct"]["all"]["n"] == 1


def test_rows_that_cannot_be_scored_are_left_out_and_counted():
    # an unreadable gold (a data error) or a timed-out check says nothing about the model: not a 0, but reported
    recs = [{"style": "cot", "answer_type": "open", "value": 1.0, "reason": None},
            {"style": "cot", "answer_type": "open", "value": 0.0, "reason": "wrong"},
            {"style": "cot", "answer_type": "open", "value": 0.0, "reason": "gold_error"},
            {"style": "cot", "answer_type": "math", "value": 0.0, "reason": "timeout"},
            {"style": "cot", "answer_type": "math", "value": 1.0, "reason": None}]
    s = summarize(recs)["cot"]
    assert (s["all"]["n"], s["all"]["accuracy"]) == (3, 2 / 3)
    assert s["all"]["unscored"] == {"gold_error": 1, "timeout": 1}
    assert s["open"]["unscored"] == {"gold_error": 1} and s["math"]["unscored"] == {"timeout": 1}
    assert s["math"]["accuracy"] == 1.0


def test_majority_baseline():
    assert majority_baseline(["yes", "yes", "no", "red"]) == 0.5


def test_stage_map():
    assert stage_dir("distill") == "distill" and stage_dir("r0/eval") == "rounds/r0/eval"  # the SFT model: round 0
    assert stage_dir(round_stage(2, "dpo")) == "rounds/r2/dpo"
    with pytest.raises(ValueError):
        stage_dir("r1/unknown")
    with pytest.raises(ValueError):
        round_stage(1, "nope")


def test_manifest_round_trip():
    m = Manifest()
    m.record("r1/pairs", inputs=10, outputs=3, seconds=1.5, config={"pairs.max_pairs_per_question": 3}, stats={"pairs": 3})
    again = Manifest.model_validate_json(m.model_dump_json())
    assert again.done("r1/pairs") and not again.done("r1/dpo") and again.stages["r1/pairs"].extra["stats"]["pairs"] == 3
    assert again.stages["r1/pairs"].config == {"pairs.max_pairs_per_question": 3}


def test_forget_from_drops_the_stage_and_everything_completed_after_it():
    m = Manifest()
    for name in ("distill", "sft", "r0/eval", "r1/rollouts", "r1/rewards"):
        m.record(name, 1, 1, 0.1)
    assert m.forget_from("r0/eval") == ["r0/eval", "r1/rollouts", "r1/rewards"]
    assert list(m.stages) == ["distill", "sft"]
    assert m.forget_from("r1/dpo") == [] and list(m.stages) == ["distill", "sft"]  # not completed: nothing to drop


def test_a_run_directory_of_an_older_version_is_moved_to_the_new_stage_names(tmp_path):
    """The SFT evaluation was the stage `eval_sft` in the folder eval/sft (its diagnosis `diagnose_sft` in
    eval/sft-diagnosis): opened now, the run directory names them r0/eval and r0/diagnose in rounds/r0/, keeps their
    records and outputs, and resumes."""
    import json

    from reasoner_ray.storage import RunDir

    run = tmp_path / "run"
    (run / "eval" / "sft" / "output").mkdir(parents=True)
    (run / "eval" / "sft" / "output" / "summary.json").write_text("{}")
    (run / "eval" / "sft-diagnosis" / "output").mkdir(parents=True)
    m = Manifest()
    for name in ("distill", "sft", "eval_sft", "diagnose_sft", "r1/rollouts"):
        m.record(name, 1, 1, 0.1, config={"k": name})
    m.stages["r1/rollouts"].extra["generated_in"] = "eval_sft"  # the SFT evaluation's pass sampled them
    (run / "manifest.json").write_text(m.model_dump_json())
    opened = RunDir(str(run)).load_manifest()
    assert list(opened.stages) == ["distill", "sft", "r0/eval", "r0/diagnose", "r1/rollouts"]  # order kept: --redo works
    assert opened.stages["r0/eval"].config == {"k": "eval_sft"}
    assert opened.stages["r1/rollouts"].extra["generated_in"] == "r0/eval"
    assert (run / "rounds" / "r0" / "eval" / "output" / "summary.json").is_file() and not (run / "eval" / "sft").exists()
    assert (run / "rounds" / "r0" / "diagnose" / "output").is_dir() and not (run / "eval").exists()
    assert list(json.loads((run / "manifest.json").read_text())["stages"]) == list(opened.stages)
    assert list(RunDir(str(run)).load_manifest().stages) == list(opened.stages)  # opening again changes nothing
