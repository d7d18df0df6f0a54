"""The DPO stage with `dpo.replay_rounds`: the round's pairs and earlier rounds' pairs reach training together,
counted apart; a round with no pair of its own carries the policy over even when earlier rounds had pairs. And a
per-round `dpo.epochs` list: each round trains its own entry."""

import json
from pathlib import Path

from reasoner_ray.core.config import build_config
from reasoner_ray.pipeline.runner import StageIO
from reasoner_ray.pipeline.stages.dpo import dpo_stage
from reasoner_ray.train.loop import TrainResult


def _pairs(path: Path, round_index: int, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question_id": f"q{round_index}-{i}", "round": round_index}) + "\n"
                            for i in range(n)))
    return path


def _io(tmp_path: Path) -> StageIO:
    (tmp_path / "out").mkdir()
    (tmp_path / "work").mkdir()
    return StageIO("r3/dpo", tmp_path / "out", tmp_path / "work", None)


def test_replayed_pairs_train_beside_the_rounds_own(tmp_path, monkeypatch):
    seen = {}

    def fake_run_dpo(config, policy, pairs_path, out_dir, round_index):  # stands in for Ray Train: what reaches it is the test
        seen["rows"] = [json.loads(line) for line in Path(pairs_path).read_text().splitlines()]
        seen["round"] = round_index
        export = Path(out_dir) / "export"
        export.mkdir()
        return TrainResult(str(export), steps=4, metrics={}, history_path="h.jsonl")

    monkeypatch.setattr("reasoner_ray.train.dpo.run_dpo", fake_run_dpo)
    own = _pairs(tmp_path / "r3.jsonl", 3, 5)
    earlier = [_pairs(tmp_path / "r1.jsonl", 1, 2), _pairs(tmp_path / "r2.jsonl", 2, 3)]
    config = build_config({}, ["dpo.replay_rounds=2"])
    counts = dpo_stage(config, "policy", own, earlier, 3)(_io(tmp_path))
    assert [r["round"] for r in seen["rows"]] == [3] * 5 + [1] * 2 + [2] * 3 and seen["round"] == 3
    assert (counts.inputs, counts.outputs) == (10, 4)
    assert counts.extra["replayed_pairs"] == 5 and len(counts.extra["replayed_from"]) == 2


def test_a_round_without_pairs_of_its_own_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("reasoner_ray.train.dpo.run_dpo", lambda *a: (_ for _ in ()).throw(AssertionError("trained")))
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text("{}")
    own = _pairs(tmp_path / "r2.jsonl", 2, 0)
    counts = dpo_stage(build_config({}, ["dpo.replay_rounds=1"]), str(policy), own, [_pairs(tmp_path / "r1.jsonl", 1, 3)])(
        _io(tmp_path))
    assert (counts.inputs, counts.outputs) == (0, 0) and counts.extra["skipped"] == "no pairs"
    assert (tmp_path / "out" / "model" / "config.json").is_file()


def test_each_round_trains_its_entry_of_a_per_round_epochs_list(tmp_path, monkeypatch, tiny_qwen2_vl):
    """`dpo.epochs: [2, 1]`: round 1 trains 2 epochs, rounds 2 and 3 one (the last entry repeats)."""
    from reasoner_ray.core.config import DataSource
    from reasoner_ray.core.prompts import prompt_messages
    from reasoner_ray.core.rows import PreferenceRow
    from reasoner_ray.data.readers import iter_rows
    from reasoner_ray.train.data import write_rows
    from reasoner_ray.train.dpo import run_dpo

    epochs = []

    def fake_run_training(config, recipe, policy, examples, out_dir, counts):  # what reaches Ray Train is the test
        epochs.append(config.dpo.epochs)
        return TrainResult(out_dir, steps=1, metrics={}, history_path="h.jsonl")

    monkeypatch.setattr("reasoner_ray.train.runner.run_training", fake_run_training)
    rows = list(iter_rows(DataSource(format="easy_vqa", split="test", limit=2)))
    pairs = tmp_path / "pairs.jsonl"
    write_rows([PreferenceRow(question_id=r.id, question=r.question, image=r.image, messages=prompt_messages(r, "cot"),
                              chosen=f"It is {r.answers[0]}.\n### Answer: {r.answers[0]}", rejected="### Answer: no",
                              chosen_score=1.0, rejected_score=0.0, ref_chosen_logp=-3.0, ref_rejected_logp=-2.0)
                for r in rows], pairs)
    config = build_config({}, ["dpo.epochs=[2, 1]"])
    for round_index in (1, 2, 3):
        run_dpo(config, tiny_qwen2_vl, str(pairs), str(tmp_path / f"r{round_index}"), round_index)
    assert epochs == [2.0, 1.0, 1.0] and config.dpo.epochs == [2.0, 1.0]
