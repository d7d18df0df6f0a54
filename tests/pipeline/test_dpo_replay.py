"""The DPO stage with `dpo.replay_rounds`: the round's pairs and earlier rounds' pairs reach training together,
counted apart; a round with no pair of its own carries the policy over even when earlier rounds had pairs."""

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

    def fake_run_dpo(config, policy, pairs_path, out_dir):  # stands in for Ray Train: what reaches it is the test
        seen["rows"] = [json.loads(line) for line in Path(pairs_path).read_text().splitlines()]
        export = Path(out_dir) / "export"
        export.mkdir()
        return TrainResult(str(export), steps=4, metrics={}, history_path="h.jsonl")

    monkeypatch.setattr("reasoner_ray.train.dpo.run_dpo", fake_run_dpo)
    own = _pairs(tmp_path / "r3.jsonl", 3, 5)
    earlier = [_pairs(tmp_path / "r1.jsonl", 1, 2), _pairs(tmp_path / "r2.jsonl", 2, 3)]
    config = build_config({}, ["dpo.replay_rounds=2"])
    counts = dpo_stage(config, "policy", own, earlier)(_io(tmp_path))
    assert [r["round"] for r in seen["rows"]] == [3] * 5 + [1] * 2 + [2] * 3
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
