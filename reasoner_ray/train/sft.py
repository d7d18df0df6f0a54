"""Supervised fine-tuning on the CoT + direct mixture (PAPER.md section 2) as a Ray Train run.

Input: VQARow JSONL/Parquet (the distillation stage's output; `rationale` filled on verified rows).
    from reasoner_ray.train.sft import run_sft
    result = run_sft(config, model_path, "runs/x/distill/rows.jsonl", "runs/x/sft")
Command line: python jobs/train_sft.py --config configs/quickstart.yaml --rows ROWS --out OUT [key=value ...]
"""

from __future__ import annotations

from collections import Counter

from reasoner_ray.core.config import Config
from reasoner_ray.core.rows import VQARow
from reasoner_ray.train.loop import TrainResult


def run_sft(config: Config, model_path: str, train_rows_path: str, out_dir: str) -> TrainResult:
    from transformers import AutoProcessor

    from reasoner_ray.train.collate import VLMEncoder, fit_filter
    from reasoner_ray.train.data import read_rows, sft_examples
    from reasoner_ray.train.runner import run_training

    counts: Counter = Counter()
    rows = read_rows(train_rows_path, VQARow)
    counts["rows"] = len(rows)
    examples = sft_examples(rows, config.sft.include_direct, counts, include_cot=config.sft.include_cot)
    encoder = VLMEncoder(AutoProcessor.from_pretrained(model_path))
    examples = fit_filter(encoder, examples, config.train.max_length, counts)
    return run_training(config, "sft", model_path, examples, out_dir, counts)
