"""DPO on preference pairs (the paper's DPO step, arXiv 2410.16198) as a Ray Train run, with no reference
model held in training.

The pairs carry the reference log-probs (`ref_chosen_logp`, `ref_rejected_logp`); rows without them get them
from `policy_path` first (the policy at the start of the round, i.e. the paper's reference in round one), in
one no-gradient pass written to `<out_dir>/pairs_with_ref.jsonl`. Call `compute_reference_logps` yourself to
use another reference (e.g. the SFT model in later rounds, `dpo.reference: sft`).
    from reasoner_ray.train.dpo import run_dpo
    result = run_dpo(config, policy_path, "runs/x/round1/pairs.jsonl", "runs/x/round1/dpo")
Command line: python jobs/train_dpo.py --config configs/quickstart.yaml --policy P --pairs PAIRS --out OUT
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.core.rows import PreferenceRow
from reasoner_ray.train.loop import TrainResult


def run_dpo(config: Config, policy_path: str, pairs_path: str, out_dir: str, round_index: int = 1) -> TrainResult:
    """`round_index` picks the round's entry of a per-round `dpo.epochs` list."""
    from reasoner_ray.models.chat import load_processor
    from reasoner_ray.train.collate import fit_filter
    from reasoner_ray.train.data import preference_examples, read_rows
    from reasoner_ray.train.reference import compute_reference_logps
    from reasoner_ray.train.runner import run_training
    from reasoner_ray.train.steps import pair_encoder

    config = config.model_copy(update={"dpo": config.dpo.model_copy(
        update={"epochs": config.dpo.epochs_of_round(round_index)})})
    counts: Counter = Counter()
    rows = read_rows(pairs_path, PreferenceRow)
    if any(r.ref_chosen_logp is None or r.ref_rejected_logp is None for r in rows):
        with_ref = str(Path(out_dir) / "pairs_with_ref.jsonl")
        counts.update({f"reference_{k}": v for k, v in compute_reference_logps(config, policy_path, pairs_path, with_ref).items()})
        rows = read_rows(with_ref, PreferenceRow)
    counts["pairs"] = len(rows)
    encoder = pair_encoder(load_processor(policy_path), config)
    examples = fit_filter(encoder, preference_examples(rows), config.train.max_length, counts)
    return run_training(config, "dpo", policy_path, examples, out_dir, counts)
