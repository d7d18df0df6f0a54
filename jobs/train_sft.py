"""SFT stage alone: train on VQARow rows (CoT where `rationale` is set, plus direct forms) and export the model.

    python jobs/train_sft.py --config configs/quickstart.yaml --rows runs/q/distill/rows.jsonl --out runs/q/sft
    (model: --model PATH, default the config's model; overrides follow: train.zero_stage=3 sft.lr=1e-5)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import output_locks, parse_job_args, run_job, setup_logging  # noqa: E402


def _arguments(parser) -> None:
    parser.add_argument("--rows", required=True, help="VQARow JSONL/Parquet file or folder")
    parser.add_argument("--out", required=True, help="output folder (model/, metrics.jsonl, tensorboard/)")
    parser.add_argument("--model", default=None, help="model folder (default: model.path or the tiny model)")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config, args = parse_job_args(argv, __doc__, _arguments)
    return run_job(lambda: _run(config, args), locks=output_locks(config, args.out))


def _run(config, args) -> int:
    from reasoner_ray.models.loading import resolve_model_path
    from reasoner_ray.pipeline.preflight import check_gpu_fit, check_input_path, check_model
    from reasoner_ray.ray_utils import init_ray
    from reasoner_ray.train.sft import run_sft

    check_input_path("--rows", args.rows)
    model = args.model or resolve_model_path(config)
    check_model(config, model, f"--model {model}" if args.model else None)
    init_ray()
    check_gpu_fit(config)
    result = run_sft(config, model, args.rows, args.out)
    print(f"SFT done: {result.steps} steps, model at {result.model_dir}, metrics in {result.history_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
