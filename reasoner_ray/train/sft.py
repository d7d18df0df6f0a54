"""Supervised fine-tuning on the CoT + direct mixture (the paper's SFT step, arXiv 2410.16198) as a Ray Train run.

Input: VQARow JSONL/Parquet (the distillation stage's output; `rationale` filled on verified rows), or, with
distillation off, the train split itself in its own format (`sft_rows`).
    from reasoner_ray.train.sft import run_sft
    result = run_sft(config, model_path, "runs/x/distill/rows.jsonl", "runs/x/sft")
Command line: python jobs/train_sft.py --config configs/quickstart.yaml --rows ROWS --out OUT [key=value ...]
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from reasoner_ray.core.config import Config, DataSource
from reasoner_ray.core.data_regime import rationale_pool, short_answer_pool
from reasoner_ray.core.rows import VQARow
from reasoner_ray.train.loop import TrainResult


def sft_source(config: Config, rows_path: str | None) -> DataSource:
    """Where SFT reads its rows with rationales: `data.train` itself (its format, image root, limit; the rationale
    pool of core/data_regime.py) when `rows_path` is unset or is `data.train.path` (distillation off: the job hands
    over the train split), else rows in the project schema, Parquet when the path ends in .parquet or is a folder
    of them, JSONL otherwise."""
    if rows_path is None or rows_path == config.data.train.path:
        return rationale_pool(config)
    path = Path(rows_path)
    parquet = path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet")))
    return DataSource(format="parquet" if parquet else "jsonl", path=rows_path)


def sft_rows(config: Config, rows_path: str | None, counts: Counter) -> list[VQARow]:
    """The SFT rows, through the data readers (one id rule, duplicates rejected): `counts` gets `rows` and
    `rejected_<reason>` for each bad row. With `data.rationale_fraction` < 1 the short-answer pool follows, its
    rationales dropped (direct forms only; counted as `short_answer_rows`)."""
    from reasoner_ray.data.readers import iter_rows

    bad: Counter = Counter()
    rows = list(iter_rows(sft_source(config, rows_path), bad))
    pool = short_answer_pool(config)
    if pool is not None:
        short = [row.model_copy(update={"rationale": None}) for row in iter_rows(pool, bad)]
        counts["short_answer_rows"] = len(short)
        rows += short
    counts["rows"] = len(rows)
    counts.update({f"rejected_{reason}": n for reason, n in bad.items()})
    return rows


def run_sft(config: Config, model_path: str, train_rows_path: str | None, out_dir: str) -> TrainResult:
    from reasoner_ray.models.chat import load_processor
    from reasoner_ray.train.collate import VLMEncoder, fit_filter
    from reasoner_ray.train.data import sft_examples
    from reasoner_ray.train.runner import run_training

    counts: Counter = Counter()
    rows = sft_rows(config, train_rows_path, counts)
    examples = sft_examples(rows, config.sft.include_direct, counts, include_cot=config.sft.include_cot)
    encoder = VLMEncoder(load_processor(model_path))
    examples = fit_filter(encoder, examples, config.train.max_length, counts)
    return run_training(config, "sft", model_path, examples, out_dir, counts)
