"""The main job from scratch under several seeds, and each figure's mean and range (run-to-run spread).

    python jobs/seeds.py --config configs/arithmetic.yaml --seeds 0 1 2 [key=value ...]
Runs the pipeline once per seed under <run.dir>/seed<k> (resumable), then prints the table and writes it to
<run.dir>/seeds.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import int_or_override, parse_job_args, run_job, setup_logging  # noqa: E402


def _arguments(parser) -> None:
    parser.add_argument("--seeds", type=int_or_override, nargs="+", default=[0, 1, 2],
                        help="run.seed of each run (default 0 1 2)")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config, args = parse_job_args(argv, __doc__, _arguments)
    return run_job(lambda: _run(config, args.seeds), run_dir=config.run.dir, locks=[config.run.dir])


def _run(config, seeds: list[int]) -> int:
    from reasoner_ray.pipeline.seeds import run_seeds, seed_table
    from reasoner_ray.ray_utils import init_ray
    from reasoner_ray.storage import write_atomic

    init_ray()
    table = seed_table(run_seeds(config, seeds), config.rounds)
    out = Path(config.run.dir) / "seeds.md"
    write_atomic(out, f"# {config.run.name}: seeds {', '.join(map(str, seeds))}\n\n{table}\n")
    print("\n" + table + f"\n\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
