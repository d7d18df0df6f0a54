"""Distillation on its own: teacher rationales for `data.train`, verified, written as SFT data.

Run:   python jobs/distill.py --config configs/quickstart.yaml [--out <folder>] [teacher.base_url=...] ...
With a real teacher:  TEACHER_API_KEY=... python jobs/distill.py --config configs/quickstart.yaml \
           teacher.base_url=https://api.openai.com/v1 teacher.model=gpt-4o-2024-05-13 teacher.start_local=false
Output goes to <run.dir>/distill unless `--out` is given; see docs/distillation.md for the layout. Exits 1
when more than distill.max_failed_fraction of the rows got no teacher answer, or none was verified.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import output_locks, parse_job_args, run_job, setup_logging  # noqa: E402

log = logging.getLogger("reasoner_ray.jobs.distill")


def main(argv: list[str] | None = None) -> int:
    setup_logging()

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default=None, help="output folder (default: <run.dir>/distill)")

    config, args = parse_job_args(argv, __doc__, add_arguments)
    out = args.out or os.path.join(config.run.dir, "distill")
    # Without --out the folder is the run directory's distill stage: its log goes with the run's
    return run_job(lambda: _run(config, out), run_dir=None if args.out else config.run.dir,
                   locks=output_locks(config, out))


def _run(config, out_dir: str) -> int:
    from reasoner_ray.pipeline.distillation import check_outcome, run_distillation

    result = run_distillation(config, out_dir)
    print(f"input {result.input_rows}  verified {result.verified}  rejected {result.rejected} "
          f"{result.rejected_by_reason}\nsummary: {result.paths['summary.json']}")
    check_outcome(result, config.distill.max_failed_fraction)  # exit 1 when the output is not usable
    return 0


if __name__ == "__main__":
    sys.exit(main())
