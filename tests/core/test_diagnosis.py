"""core/diagnosis.py on hand-made records: the classes of the wrong chains, the share that went wrong in a step,
the share of right chains that were lucky, and the questions in the band.

Question a: 4 chains, values 1, 1, 0, 0 (accuracy 0.5, in [0.25, 0.85]); question b: 2 chains, both right (1.0,
all right); question c: one wrong chain with no checker (0.0, all wrong); one timed-out chain is left out.
Wrong chains checked: arithmetic_slip, misread -> step_error_share 1/2. Right chains checked: correct, lucky,
correct, correct -> lucky_share 1/4.
"""

from __future__ import annotations

import pytest

from reasoner_ray.core.diagnosis import (
    ARITHMETIC_SLIP,
    CORRECT,
    LUCKY,
    MISREAD,
    diagnose,
    precondition_failures,
    reading_drift,
)


def record(qid: str, value: float, check: str | None, reason: str | None = None) -> dict:
    return {"question_id": qid, "value": value, "step_check": check, "reason": reason}


def test_diagnosis_worked_by_hand():
    records = [record("a", 1.0, CORRECT), record("a", 1.0, LUCKY), record("a", 0.0, ARITHMETIC_SLIP),
               record("a", 0.0, MISREAD), record("b", 1.0, CORRECT), record("b", 1.0, CORRECT),
               record("c", 0.0, ""), record("c", 0.0, None, reason="timeout")]
    d = diagnose(records, (0.25, 0.85))
    assert (d["chains"], d["wrong"], d["questions"]) == (7, 3, 3)
    assert d["classes"] == {ARITHMETIC_SLIP: 1, MISREAD: 1}
    assert d["step_error_share"] == pytest.approx(0.5)
    assert d["lucky_share"] == pytest.approx(0.25)
    assert (d["in_band"], d["all_right"], d["all_wrong"]) == (1, 1, 1)


def test_no_checker_gives_no_shares():
    d = diagnose([record("a", 1.0, ""), record("a", 0.0, "")])
    assert d["step_error_share"] is None and d["lucky_share"] is None and "in_band" not in d


def test_a_model_that_misreads_fails_the_precondition_and_one_that_slips_passes():
    # 3 of 4 checked wrong chains misread: step_error_share 0.25, under 0.7 (question a at 2 of 6 is in the band)
    misreads = [record("a", 0.0, MISREAD)] * 3 + [record("a", 0.0, ARITHMETIC_SLIP)] + [record("a", 1.0, CORRECT)] * 2
    failures = precondition_failures(diagnose(misreads, (0.25, 0.85)))
    assert len(failures) == 1 and "only 25.0%" in failures[0] and "3 of 4 misread" in failures[0]
    assert failures[0].endswith("the rounds can fix at most those 25.0%")
    # 7 of 10 slip in a step: exactly the 70% the method needs; question a (10 of 20 right) is in the band
    slips = [record("a", 0.0, ARITHMETIC_SLIP)] * 7 + [record("a", 0.0, MISREAD)] * 3 + [record("a", 1.0, CORRECT)] * 10
    assert precondition_failures(diagnose(slips, (0.25, 0.85))) == []


def test_no_question_in_the_band_fails_the_precondition_and_no_checker_says_nothing():
    all_right = [record("a", 1.0, CORRECT), record("a", 1.0, CORRECT)]
    failures = precondition_failures(diagnose(all_right, (0.25, 0.85)))
    assert len(failures) == 1 and "[0.25, 0.85]" in failures[0]
    assert precondition_failures(diagnose([record("a", 0.0, ""), record("a", 1.0, "")])) == []


def test_rollouts_that_misread_five_points_more_often_than_round_ones_are_called_out():
    def rollouts(misread, chains=200):  # a diagnosis as the rewards stage records it
        return {"chains": chains, "wrong": 100, "classes": {MISREAD: misread, ARITHMETIC_SLIP: 100 - misread},
                "step_error_share": (100 - misread) / 100}

    # 10/200 = 5.0% in round 1; 19/200 = 9.5% is 4.5 points more: quiet; 20/200 = 10.0% is 5 points: called out
    assert reading_drift(rollouts(10), rollouts(19)) is None
    assert reading_drift(rollouts(10), rollouts(20)).startswith("10.0% of these rollouts misread the input, "
                                                                 "against 5.0% of round 1's")
    assert reading_drift(rollouts(30), rollouts(10)) is None  # reading better is not drift
    no_checker = {"chains": 200, "wrong": 100, "classes": {}, "step_error_share": None}
    assert reading_drift(no_checker, rollouts(60)) is None and reading_drift(rollouts(0), no_checker) is None
    assert reading_drift({}, rollouts(60)) is None  # a round 1 recorded before diagnoses existed
