"""The main job: LLaVA-Reasoner's pipeline on Ray (distill -> SFT -> rounds of rollouts, reward, pairs, DPO).

Run locally (starts Ray in-process):   python jobs/iterative_dpo.py --config configs/quickstart.yaml
Run on a cluster:                      ray job submit --working-dir . -- python jobs/iterative_dpo.py --config ...
Overrides follow the config file:      python jobs/iterative_dpo.py --config configs/quickstart.yaml rounds=1

Re-running with the same config resumes: completed stages (see <run.dir>/manifest.json) are skipped.
Ends by printing the results table and the report's path.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import log_to_run_dir, parse_config, setup_logging  # noqa: E402

log = logging.getLogger("iterative_dpo")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config = parse_config(argv, __doc__.splitlines()[0])
    log_to_run_dir(config.run.dir)
    from reasoner_ray.pipeline.iterative import run_pipeline
    from reasoner_ray.ray_utils import init_ray

    init_ray()
    result = run_pipeline(config)
    print("\n" + result.table)
    print(f"\nreport: {result.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
