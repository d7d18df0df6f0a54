"""One-line failure messages (what the job prints) and the config keys each stage depends on (what a changed
config is checked against), with worked examples."""

from __future__ import annotations

import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.core.errors import JobError, PreflightError, StageFailed, one_line, root_cause
from reasoner_ray.core.stage_inputs import ABSENT, changed_inputs, stage_inputs, stage_kind


class FakeRayTaskError(Exception):
    """Ray wraps a worker's error with the worker's traceback as text and the original as `.cause`."""

    def __init__(self, cause):
        self.cause = cause
        super().__init__("ray::train_func() (pid=12, ip=127.0.0.1)\nTraceback (most recent call last):\n  File x\n"
                         f"{type(cause).__name__}: {cause}")


def test_one_line_of_plain_wrapped_and_chained_errors():
    assert one_line(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert one_line(FakeRayTaskError(KeyError("question_id"))) == "KeyError: 'question_id'"
    try:
        try:
            raise OSError("disk full")
        except OSError as inner:
            raise RuntimeError("export failed") from inner
    except RuntimeError as outer:
        assert root_cause(outer).args == ("disk full",) and one_line(outer) == "OSError: disk full"
    # A traceback only in the text (Ray Train's TrainingFailedError): its last error line.
    text = RuntimeError("Training failed.\nTraceback (most recent call last):\n  File y\nValueError: no training examples")
    assert one_line(text) == "ValueError: no training examples"
    assert one_line(ValueError("x" * 1000), limit=50).endswith("...") and len(one_line(ValueError("x" * 1000), limit=50)) == 50


def test_stage_failed_keeps_the_message_written_for_people_and_its_exit_code():
    written = StageFailed("distill", PreflightError("teacher preflight: fix teacher.base_url"))
    assert str(written) == "stage distill failed: teacher preflight: fix teacher.base_url" and written.exit_code == 2
    crashed = StageFailed("sft", FakeRayTaskError(MemoryError("CUDA out of memory")))
    assert str(crashed) == "stage sft failed: MemoryError: CUDA out of memory" and crashed.exit_code == 1
    assert one_line(crashed) == str(crashed)
    assert isinstance(root_cause(written), PreflightError) and not isinstance(root_cause(crashed), JobError)
    assert one_line(JobError("two\nlines")) == "two lines"


def test_stage_kind_and_inputs():
    assert [stage_kind(s) for s in ("distill", "r0/eval", "r2/dpo", "r1/verify")] == ["distill", "eval", "dpo", "verify"]
    tree = build_config({}, ["dpo.beta=0.2", "sft.lr=1e-4"]).model_dump(mode="json")
    dpo = stage_inputs(tree, "r3/dpo")
    assert dpo["dpo.beta"] == 0.2 and dpo["run.seed"] == 0 and "dpo.ref_batch_size" not in dpo  # speed, not result
    sft = stage_inputs(tree, "sft")
    assert sft["sft.lr"] == 1e-4 and sft["model.tiny.text_layers"] == 2  # a section stands for all its keys
    assert stage_inputs(tree, "r1/rewards") == {}
    assert "teacher.concurrency" not in stage_inputs(tree, "distill") and "teacher.model" in stage_inputs(tree, "distill")
    # where a completion ends for the reference log-probs and DPO depends on it (the tokenization changes)
    default = build_config({}, []).model_dump(mode="json")
    flipped = build_config({}, ["dpo.reuse_sampled_logps=false"]).model_dump(mode="json")
    for stage in ("r1/reference", "r1/dpo"):
        assert changed_inputs(stage_inputs(default, stage), stage_inputs(flipped, stage)) == [
            ("dpo.reuse_sampled_logps", True, False)]


def test_a_per_round_list_is_recorded_as_each_rounds_own_entry():
    shrinking = build_config({}, ["dpo.epochs=[2, 2, 1]"]).model_dump(mode="json")
    assert [stage_inputs(shrinking, f"r{r}/dpo")["dpo.epochs"] for r in (1, 2, 3, 4)] == [2.0, 2.0, 1.0, 1.0]
    assert [build_config({}, ["dpo.epochs=[2, 2, 1]"]).dpo.epochs_of_round(r) for r in (1, 3, 9)] == [2.0, 1.0, 1.0]
    # a run that trained 2 epochs a round, continued with a smaller last step: rounds 1 and 2 are not stale
    every = build_config({}, ["dpo.epochs=2"]).model_dump(mode="json")
    assert [changed_inputs(stage_inputs(every, f"r{r}/dpo"), stage_inputs(shrinking, f"r{r}/dpo")) for r in (1, 2, 3)] == [
        [], [], [("dpo.epochs", 2.0, 1.0)]]


@pytest.mark.parametrize("recorded, current, expected", [
    ({"a": 1, "b": 2}, {"a": 1, "b": 3}, [("b", 2, 3)]),
    # a key on one side only: nothing says the stage would give the same result (dpo.reuse_sampled_logps was added
    # to the reference and dpo stages' inputs after runs had completed them)
    ({"a": 1}, {"a": 1, "new": 5}, [("new", ABSENT, 5)]),
    ({"a": [1.0, 1.2]}, {"a": [1.0]}, [("a", [1.0, 1.2], [1.0])]),
    ({"a": 1, "gone": 2}, {"a": 1}, [("gone", 2, ABSENT)]),
])
def test_changed_inputs(recorded, current, expected):
    assert changed_inputs(recorded, current) == expected
