"""The main job: LLaVA-Reasoner's pipeline on Ray (distill -> SFT -> rounds of rollouts, reward, pairs, DPO).

Run locally (starts Ray in-process):   python jobs/iterative_dpo.py --config configs/quickstart.yaml
Run on a cluster:                      ray job submit --working-dir . -- python jobs/iterative_dpo.py --config ...
Overrides follow the config file:      python jobs/iterative_dpo.py --config configs/quickstart.yaml rounds=1
Redo a completed stage and all after:  python jobs/iterative_dpo.py --config ... --redo r1/pairs

Re-running the same command resumes: completed stages (see <run.dir>/manifest.json) are skipped, and a failed
stage runs again. Ends by printing the results table and the report's path; on failure, one line saying what
failed and what to do, and a non-zero exit code (docs/resuming.md).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import parse_job_args, run_job, setup_logging  # noqa: E402

log = logging.getLogger("reasoner_ray.jobs.iterative_dpo")


def _arguments(parser) -> None:
    parser.add_argument("--redo", "--from", dest="redo", metavar="STAGE", default=None,
                        help="rerun this completed stage and every stage after it (e.g. sft, r1/pairs); caches are kept")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config, args = parse_job_args(argv, __doc__, _arguments)
    return run_job(lambda: _run(config, args.redo), run_dir=config.run.dir, locks=[config.run.dir])


def _run(config, redo: str | None) -> int:
    from reasoner_ray.pipeline.iterative import run_pipeline
    from reasoner_ray.ray_utils import init_ray

    init_ray()
    result = run_pipeline(config, redo=redo)
    print("\n" + result.table)
    print(f"\nreport: {result.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
