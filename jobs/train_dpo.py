"""DPO stage alone: train a policy on PreferenceRow pairs (reference log-probs filled first if missing).

    python jobs/train_dpo.py --config configs/quickstart.yaml --policy runs/q/sft/model \
        --pairs runs/q/round1/pairs.jsonl --out runs/q/round1/dpo [--reference runs/q/sft/model] [--round 1] \
        [key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import output_locks, parse_job_args, run_job, setup_logging  # noqa: E402


def _arguments(parser) -> None:
    parser.add_argument("--policy", required=True, help="the policy model folder to start from")
    parser.add_argument("--pairs", required=True, help="PreferenceRow JSONL/Parquet file or folder")
    parser.add_argument("--out", required=True, help="output folder (model/, metrics.jsonl, tensorboard/)")
    parser.add_argument("--reference", default=None, help="reference model (default: the policy); scored first")
    parser.add_argument("--round", type=int, default=1, help="the round whose entry of a per-round dpo.epochs list "
                                                              "trains (default 1)")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config, args = parse_job_args(argv, __doc__, _arguments)
    return run_job(lambda: _run(config, args), locks=output_locks(config, args.out))


def _run(config, args) -> int:
    from reasoner_ray.pipeline.preflight import check_gpu_fit, check_input_path, check_model
    from reasoner_ray.ray_utils import init_ray
    from reasoner_ray.train.dpo import run_dpo
    from reasoner_ray.train.reference import compute_reference_logps

    check_input_path("--pairs", args.pairs)
    for flag, path in (("--policy", args.policy), ("--reference", args.reference)):
        if path:
            check_model(config, path, f"{flag} {path}")
    init_ray()
    check_gpu_fit(config)
    pairs = args.pairs
    if args.reference:
        pairs = str(Path(args.out) / "pairs_with_ref.jsonl")
        print("reference:", compute_reference_logps(config, args.reference, args.pairs, pairs))
    result = run_dpo(config, args.policy, pairs, args.out, args.round)
    print(f"DPO done: {result.steps} steps, model at {result.model_dir}, metrics in {result.history_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
