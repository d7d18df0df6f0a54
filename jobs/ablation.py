"""The paper's SFT ablation: direct-only vs CoT-only vs mixture SFT, each evaluated with CoT and direct prompts.

    python jobs/ablation.py --config configs/digits.yaml [key=value ...]
Runs the pipeline up to the SFT evaluation once per variant under <run.dir>/ablation/<variant> (resumable),
then prints the table and writes it to <run.dir>/ablation/ablation.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import parse_config, run_job, setup_logging  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config = parse_config(argv, __doc__)
    return run_job(lambda: _run(config), run_dir=config.run.dir, locks=[config.run.dir])


def _run(config) -> int:
    from reasoner_ray.pipeline.ablation import ablation_table, run_ablation
    from reasoner_ray.ray_utils import init_ray
    from reasoner_ray.storage import write_atomic

    init_ray()
    table = ablation_table(run_ablation(config))
    out = Path(config.run.dir) / "ablation" / "ablation.md"
    write_atomic(out, f"# SFT data ablation: {config.run.name}\n\n{table}\n")
    print("\n" + table + f"\n\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
