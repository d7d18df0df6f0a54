"""The report's sections from a hand-made manifest: groups, DPO metrics, verifier; the ablation table and configs."""

import json

import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.core.rundir import Manifest
from reasoner_ray.pipeline.ablation import VARIANTS, VariantResult, ablation_table, variant_config
from reasoner_ray.pipeline.report import (diagnosis_table, dpo_table, group_table, pairs_table, training_table,
                                          verifier_table, write_report)


def acc(a, se=0.01, n=100):
    return {"n": n, "accuracy": a, "stderr": se}


def manifest(tmp_path):
    m = Manifest()
    summary = {"cot": {"all": acc(0.5), "multi_step": acc(0.4, n=60)}, "direct": {"all": acc(0.3), "multi_step": acc(0.1, n=60)}}
    m.record("r0/eval", 100, 200, 1.0, cot=acc(0.5), direct=acc(0.3), summary=summary)
    m.record("r1/rollouts", 100, 800, 0.0, generated_in="r0/eval")
    m.record("r1/pairs", 800, 120, 1.0, stats={"questions_kept": 70, "chosen_refused": 9, "rejected_refused": 4},
             rejected_classes={"wrong_conclusion": 80, "arithmetic_slip": 40})
    metrics = tmp_path / "dpo.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "rewards/chosen": 0.1 * s, "rewards/rejected": -0.1 * s,
                                           "rewards/margins": 0.2 * s, "rewards/accuracies": 0.5, "loss": 0.6}) + "\n"
                               for s in range(1, 11)))
    m.record("sft", 500, 31, 1.0, counts={"rows": 250, "examples": 500, "no_rationale": 3, "examples_used": 500,
                                          "example_passes_not_trained": 4})
    m.record("r1/dpo", 120, 10, 1.0, metrics_path=str(metrics),
             counts={"pairs": 120, "prompt_too_long": 2, "examples_used": 118, "example_passes_not_trained": 6})
    m.record("r1/eval", 100, 200, 1.0, cot=acc(0.55), direct=acc(0.3), summary=summary)
    verify = {meth: {**acc(v), "vs_majority": v - 0.5, "vs_majority_stderr": 0.02}
              for meth, v in (("first_sample", 0.45), ("majority", 0.5), ("best_of_n/verifier/step_min", 0.56),
                              ("best_of_n/policy/mean", 0.52), ("weighted_vote/policy/sum", 0.54), ("oracle", 0.8))}
    auroc = {"verifier/step_min": {"mean": 0.71, "stderr": 0.02, "questions": 40},
             "policy/sum": {"mean": 0.55, "stderr": 0.03, "questions": 40}}
    selection = {"best": "best_of_n/verifier/step_min",
                 "temperatures": {"policy/sum": {"temperature": 0.2, "multiple": 3.0, "accuracy": 0.6}},
                 "validation": {"best_of_n/verifier/step_min": acc(0.62), "weighted_vote/policy/sum": acc(0.6)}}
    rho = {"policy/sum": {"mean": -0.33, "stderr": 0.02, "questions": 90}}
    m.record("r1/verify", 100, 800, 1.0, summary=verify, auroc=auroc, selection=selection,
             rank_correlation_with_likelihood=rho)
    m.record("r0/diagnose", 50, 400, 1.0, diagnosis={
        "chains": 400, "wrong": 200, "questions": 50, "classes": {"arithmetic_slip": 150, "misread": 20},
        "step_error_share": 150 / 170, "lucky_share": 0.125, "band": [0.25, 0.85], "in_band": 30, "all_right": 5,
        "all_wrong": 3})
    return m


def test_group_dpo_and_verifier_tables(tmp_path):
    m = manifest(tmp_path)
    groups = group_table(m, 1)
    assert "| all | 100 | 50.0 ± 1.0 | 30.0 ± 1.0 | 50.0 ± 1.0 | 30.0 ± 1.0 |" in groups
    assert "| multi_step | 60 | 40.0 ± 1.0 | 10.0 ± 1.0 |" in groups
    # mean of the last 5 steps (6..10): chosen 0.8, rejected -0.8, margins 1.6
    assert "| 1 | 120 | 10 | 0.800 | -0.800 | 1.600 | 0.500 | 0.600 |" in dpo_table(m, 1)
    training = training_table(m, 1)
    assert "| sft | 500 | 31 | 4 | no_rationale 3 |" in training
    assert "| r1/dpo | 118 | 10 | 6 | prompt_too_long 2 |" in training
    verifier = verifier_table(m, 1)
    assert "| 1 | greedy | 55.0 ± 1.0 | - | - | - | - |" in verifier
    assert ("| 1 | **best_of_n/verifier/step_min** (best on validation) | 56.0 ± 1.0 | +6.0 ± 2.0 | "
            "0.710 ± 0.020 (40) | - | 62.0 |") in verifier
    assert ("| 1 | weighted_vote/policy/sum | 54.0 ± 1.0 | +4.0 ± 2.0 | 0.550 ± 0.030 (40) | -0.33 (90) | "
            "60.0 (T = 3 sd) |") in verifier
    assert "| 1 | majority | 50.0 ± 1.0 | +0.0 ± 2.0 | - | - | - |" in verifier
    diagnosis = diagnosis_table(m, 1)
    assert ("| r0/diagnose | 400 | 200 | 88.2% | arithmetic_slip 150, misread 20 | 12.5% | 30 of 50 (all right 5, "
            "all wrong 3) |") in diagnosis
    assert "| 1 | 70 | 120 | wrong_conclusion 80, arithmetic_slip 40 | 9 | 4 |" in pairs_table(m, 1)
    assert pairs_table(Manifest(), 1) == ""  # no pairs counted by class (no step checker): no section
    path = write_report(m, 1, tmp_path / "report", "t")
    text = path.read_text()
    assert "## Accuracy by group" in text and "## Verifiers of N sampled" in text and "## Where chains go wrong" in text
    assert "## What the pairs teach against" in text
    assert "rollouts 0 (generated in r0/eval), pairs 1," in text  # the time went to the SFT evaluation's pass


def test_ablation_configs_and_table(tmp_path):
    config = build_config({"run": {"dir": str(tmp_path / "run")}, "rounds": 2})
    cfgs = {v: variant_config(config, v, None if v == "mixture" else 700) for v in VARIANTS}
    assert list(VARIANTS)[0] == "mixture"  # its step count is the others' budget
    assert cfgs["mixture"].sft.steps is None and cfgs["cot_only"].sft.steps == cfgs["direct_only"].sft.steps == 700
    assert cfgs["direct_only"].sft.include_cot is False and cfgs["direct_only"].sft.include_direct is True
    assert cfgs["cot_only"].sft.include_direct is False
    assert all(c.rounds == 0 for c in cfgs.values())
    assert len({c.run.dir for c in cfgs.values()}) == 3
    assert len({c.distill.cache_dir for c in cfgs.values()}) == 1  # one teacher cache for the three
    result = VariantResult("mixture", {"cot": {"all": acc(0.6)}, "direct": {"all": acc(0.2)}}, {"all": acc(0.61)}, 700)
    assert "| mixture | 700 | all | 100 | 60.0 ± 1.0 | 61.0 ± 1.0 | 20.0 ± 1.0 |" in ablation_table([result])


def test_seed_table_means_and_ranges(tmp_path):
    from reasoner_ray.pipeline.seeds import figures, seed_config, seed_table

    config = build_config({"run": {"dir": str(tmp_path / "run"), "name": "x"}})
    assert seed_config(config, 2).run.dir == str(tmp_path / "run" / "seed2") and seed_config(config, 2).run.seed == 2
    runs = {}
    for seed, (sft, r1) in enumerate(((0.50, 0.56), (0.40, 0.44), (0.60, 0.63))):
        m = Manifest()
        m.record("r0/eval", 10, 20, 1.0, cot=acc(sft), direct=acc(0.2))
        m.record("r1/eval", 10, 20, 1.0, cot=acc(r1), direct=acc(0.2))
        runs[seed] = m
    assert figures(runs[0], 1) == pytest.approx({"sft cot": 50.0, "sft direct": 20.0, "r1 cot": 56.0,
                                                 "r1 direct": 20.0, "r1 cot gain over sft": 6.0})
    table = seed_table(runs, 1)
    assert "| sft cot | 50.0 | 40.0 | 60.0 | 50.0 | 40.0 | 60.0 |" in table
    assert "| r1 cot gain over sft | 4.3 | 3.0 | 6.0 | 6.0 | 4.0 | 3.0 |" in table
    assert "verifier" not in table  # no round verified
    # validation chose another method in each seed: still one row, the methods named below the table
    for seed, (method, gain, auc) in enumerate((("weighted_vote/verifier/mean", 0.038, 0.74),
                                                ("weighted_vote/verifier/sum", 0.022, 0.73),
                                                ("best_of_n/policy/step_min", -0.01, 0.51))):
        runs[seed].record("r1/verify", 10, 80, 1.0, summary={"majority": acc(0.5), method: {"vs_majority": gain}},
                          selection={"best": method}, auroc={method.split("/", 1)[1]: {"mean": auc, "questions": 9}})
    table = seed_table(runs, 1)
    assert "| r1 verifier chosen on validation vs majority | 1.7 | -1.0 | 3.8 | 3.8 | 2.2 | -1.0 |" in table
    assert "| r1 its AUROC (x100) | 66.0 | 51.0 | 74.0 | 74.0 | 73.0 | 51.0 |" in table
    assert table.endswith("r1's verifier chosen on validation: seed 0 weighted_vote/verifier/mean, "
                          "seed 1 weighted_vote/verifier/sum, seed 2 best_of_n/policy/step_min")
