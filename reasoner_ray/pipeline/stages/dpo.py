"""The `r<k>/dpo` stage: DPO of the policy on the round's pairs (Ray Train + DeepSpeed), with earlier rounds' pairs
replayed beside them where `dpo.replay_rounds` asks; a round without a pair of its own carries the policy over."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageIO, place_model

log = logging.getLogger(__name__)


def _lines(path: Path):
    """The file's non-blank lines, streamed (pair rows carry their images)."""
    with path.open() as fh:
        yield from (line.rstrip("\n") for line in fh if line.strip())


def dpo_stage(config: Config, policy: str, pairs_path: Path, replayed: Sequence[Path] = (), round_index: int = 1):
    """`pairs_path`: the round's pairs; `replayed`: earlier rounds' pair files (with SFT reference log-probs);
    `round_index`: which entry of a per-round `dpo.epochs` list trains."""

    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.train.dpo import run_dpo

        own = sum(1 for _ in _lines(pairs_path))
        if own == 0:
            # Every question was all-correct, all-wrong or outside the band: nothing to learn this round.
            log.warning("no preference pairs this round; the policy is carried over unchanged")
            model = place_model(policy, io)
            return StageCounts(0, 0, {"model": str(model), "skipped": "no pairs"})
        train_path, extra = pairs_path, {}
        if replayed:
            train_path, earlier = io.work / "pairs_with_replay.jsonl", 0
            with train_path.open("w") as out:
                for index, path in enumerate([pairs_path, *replayed]):
                    for line in _lines(path):
                        out.write(line + "\n")
                        earlier += index > 0
            extra = {"replayed_pairs": earlier, "replayed_from": [str(p) for p in replayed]}
            log.info("training on %d pairs of this round and %d replayed from %d earlier rounds", own, earlier,
                     len(replayed))
        result = run_dpo(config, policy, str(train_path), str(io.work), round_index)
        model = place_model(result.model_dir, io)
        return StageCounts(own + extra.get("replayed_pairs", 0), result.steps,
                           {"model": str(model), "metrics_path": result.history_path, "counts": result.counts,
                            "final": result.metrics, **extra})

    return run
