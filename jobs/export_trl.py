"""Export this project's data in TRL's formats: preference pairs (a round's pairs.jsonl) or SFT examples (the
distilled rows.jsonl, CoT + direct as the SFT stage builds them). `.parquet` embeds the images; `.jsonl` refers
to image files. The DPO stage reads TRL pair files as they are (jobs/train_dpo.py --pairs).

    python jobs/export_trl.py --pairs runs/quickstart/rounds/r1/pairs/output/pairs.jsonl --out pairs_trl.parquet
    python jobs/export_trl.py --sft runs/quickstart/distill/output/rows.jsonl --out sft_trl.parquet [sft.include_direct=false]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import parse_job_args, run_guarded, setup_logging  # noqa: E402


def _arguments(parser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--pairs", help="PreferenceRow file (JSONL or Parquet)")
    what.add_argument("--sft", help="VQARow file with rationales (the distill stage's rows.jsonl)")
    parser.add_argument("--out", required=True, help="output .parquet or .jsonl")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config, args = parse_job_args(argv, __doc__, _arguments)
    return run_guarded(lambda: _export(config, args))


def _export(config, args) -> int:
    from reasoner_ray.core.config import DataSource
    from reasoner_ray.core.rows import PreferenceRow
    from reasoner_ray.data.readers import iter_rows
    from reasoner_ray.data.trl_format import pair_to_trl, sft_to_trl, write_trl
    from reasoner_ray.train.data import read_rows, sft_examples

    if args.pairs:
        records = [pair_to_trl(p) for p in read_rows(args.pairs, PreferenceRow)]
    else:
        rows = list(iter_rows(DataSource(format="jsonl", path=args.sft)))
        records = [sft_to_trl(e) for e in sft_examples(rows, config.sft.include_direct, include_cot=config.sft.include_cot)]
    path = write_trl(records, args.out)
    print(f"{len(records)} records written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
