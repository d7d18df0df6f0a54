"""The separate verifier's stage (V-STaR) and the verify stage on a tiny run, without an engine: chains are written
as a rollout stage and an evaluation's pass would leave them. The verifier trains plain DPO from the SFT model on
the rounds' correct vs incorrect chains; the verify stage ranks chains by both verifiers' scores (sum, mean,
worst step), chooses the vote temperatures and the best method on the validation chains, and reports each
score's AUROC on the evaluation chains."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.data.readers import iter_rows
from reasoner_ray.pipeline.prefetch import Prefetch
from reasoner_ray.pipeline.runner import StageIO
from reasoner_ray.pipeline.stages.verifier import verifier_stage
from reasoner_ray.pipeline.stages.verify import question_sets, verify_plan, verify_stage
from reasoner_ray.operators.scoring import score_batch

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _chains(rows, samples: int, round_index: int, temperature: float = 1.0) -> pa.Table:
    """`samples` chains per question, the odd ones wrong, as the generation stage writes them."""
    out = []
    for row in rows:
        gold = row.answers[0]
        wrong = {"yes": "no", "no": "yes", "triangle": "circle"}.get(gold, "triangle")
        for i in range(samples):
            answer = gold if i % 2 == 0 else wrong
            out.append({"question_id": row.id, "style": "cot", "sample_index": i, "temperature": temperature,
                        "text": f"Look {i}: the shape is clear.\n### Answer: {answer}",
                        "finish_reason": "stop", "prompt_tokens": 0, "completion_tokens": 12, "round": round_index,
                        "answer": row.answers, "answer_type": row.answer_type, "choices": [], "tags": "[]"})
    return pa.Table.from_pylist(out)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    run = tmp_path_factory.mktemp("verifier")
    return build_config({
        "run": {"dir": str(run)},
        "data": {"train": {"format": "easy_vqa", "split": "train", "limit": 8},
                 "eval": {"format": "easy_vqa", "split": "test", "limit": 5},
                 "validation": {"format": "easy_vqa", "split": "test", "offset": 5, "limit": 5}},
        "rollout": {"limit": 8},
        "eval": {"samples": 4, "max_tokens": 32},
        "verifier": {"enabled": True, "global_batch_size": 4, "epochs": 1, "lr": 1e-3},
        "train": {"num_workers": 1, "max_length": 256, "log_every_steps": 1},
        "dpo": {"ref_batch_size": 8},
    })


def test_the_separate_verifier_and_the_verify_stage(config, tiny_qwen2_vl, ray_local, tmp_path):
    # Round 1's rollouts, scored: 8 questions x 4 chains, half of them right
    rewards = tmp_path / "r1-rewards"
    rewards.mkdir()
    pq.write_table(pa.Table.from_pandas(score_batch(_chains(list(iter_rows(config.data.train)), 4, 1).to_pandas())),
                   rewards / "part-0.parquet")
    trained = StageIO("r1/verifier", tmp_path / "verifier" / "output", tmp_path / "verifier" / "work", None)
    for folder in (trained.output, trained.work):
        folder.mkdir(parents=True)
    counts = verifier_stage(config, tiny_qwen2_vl, [(1, rewards, tiny_qwen2_vl)])(trained)
    # every question has 2 right and 2 wrong chains: 4 combinations each, no accuracy band
    assert counts.inputs == 8 * 4 and counts.extra["stats"]["r1"]["questions_kept"] == 8
    assert counts.extra["reference"]["written"] == 32
    assert counts.outputs >= 1 and (trained.output / "model" / "config.json").is_file()
    pairs = [json.loads(line) for line in (trained.output / "pairs.jsonl").open()]
    assert all(p["ref_chosen_logp"] is not None for p in pairs)

    # The verify stage adopts the chains an evaluation's pass left for it (test and validation sets)
    io = StageIO("r1/verify", tmp_path / "verify" / "output", tmp_path / "verify" / "work", None)
    io.output.mkdir(parents=True)
    for part, source in question_sets(config).items():
        prefetch = Prefetch(io.name, io.work, tiny_qwen2_vl, source, verify_plan(config, 1), part)
        prefetch.task().out.mkdir(parents=True)
        pq.write_table(_chains(list(iter_rows(source)), 4, 1), prefetch.task().out / "part-0.parquet")
        prefetch.record("r1/eval", 5)
    verified = verify_stage(config, tiny_qwen2_vl, tiny_qwen2_vl, 1, tiny_qwen2_vl,
                            str(trained.output / "model"))(io)
    assert verified.inputs == 5 and verified.outputs == 20
    assert verified.extra["generated_in"] == verified.extra["validation_generated_in"] == "r1/eval"
    summary = json.loads((io.output / "summary.json").read_text())
    methods = set(summary["summary"]["all"])
    for form in ("policy", "verifier"):
        for score in ("sum", "mean", "step_min"):
            assert {f"best_of_n/{form}/{score}", f"weighted_vote/{form}/{score}"} <= methods
    assert {"majority", "oracle", "first_sample", "best_of_n/likelihood"} <= methods
    assert summary["summary"]["all"]["oracle"]["accuracy"] == 1.0  # every question has a right chain
    # policy == reference here: the paper's verifier scores every chain 0, and its AUROC is 0.5
    assert summary["auroc"]["policy/sum"]["mean"] == pytest.approx(0.5)
    # ... and says nothing about the likelihood's order (a constant score is left out of the rank correlation)
    correlations = summary["rank_correlation_with_likelihood"]
    assert set(correlations) == {f"{form}/{score}" for form in ("policy", "verifier")
                                 for score in ("sum", "mean", "step_min")}
    assert correlations["policy/sum"]["questions"] == 0
    assert summary["auroc"]["verifier/step_min"]["questions"] == 5
    selection = summary["selection"]
    assert selection["best"].startswith(("best_of_n/", "weighted_vote/")) and "likelihood" not in selection["best"]
    assert selection["temperatures"]["verifier/sum"]["multiple"] in (0.1, 0.3, 1.0, 3.0, 10.0)
    chains = pq.read_table(io.output / "test" / "chains.parquet").to_pylist()
    assert len(chains) == 20 and "score/verifier/step_min" in chains[0]
