"""A round's evaluation and the next round's rollouts: two generation passes vs one (`rollout.reuse_eval_engines`).

    python benchmarks/bench_eval_then_rollouts.py [--eval 128] [--prompts 128] [--samples 8] [--tokens 64]

The main job evaluates a model and then samples the next round's rollouts from the same model. This runs the
two stages as the main job does (StageRunner, eval_stage then rollouts_stage) on the ~20M-parameter tiny Qwen2-VL
of bench_rollouts.py, easy-VQA questions (evaluation: test split, greedy CoT + direct, `--tokens` each;
rollouts: train split, `--samples` chains of `--tokens` fixed-length tokens), once with a pass per stage and once
with the evaluation's engines generating both, each in a fresh process, the two ways alternating `--repeats`
times (this machine's timings vary by about 15% between runs). Prints each run's stage wall times and the sums.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_rollouts import bench_model  # noqa: E402


def run_stages(model: str, args, shared: bool) -> dict:
    from reasoner_ray.core.config import build_config
    from reasoner_ray.core.data_regime import rollout_source
    from reasoner_ray.pipeline.prefetch import Prefetch
    from reasoner_ray.pipeline.stages.evaluate import eval_stage
    from reasoner_ray.pipeline.stages.rollouts import rollout_plan, rollouts_stage
    from reasoner_ray.pipeline.runner import StageRunner
    from reasoner_ray.ray_utils import init_ray

    init_ray()
    config = build_config({
        "run": {"dir": tempfile.mkdtemp(prefix="bench-eval-rollouts-", dir=ROOT / ".tmp")},
        "data": {"train": {"format": "easy_vqa", "split": "train", "limit": args.prompts},
                 "eval": {"format": "easy_vqa", "split": "test", "limit": args.eval}},
        "eval": {"max_tokens": args.tokens},
        "rollout": {"samples_per_temperature": args.samples, "temperatures": [1.0], "max_tokens": args.tokens,
                    "batch_size": 64, "max_model_len": 1024, "kv_cache_gib": 2, "ignore_eos": True},
    })
    runner = StageRunner(config)
    then = [Prefetch("r1/rollouts", runner.run_dir.work("r1/rollouts"), model, rollout_source(config, 1),
                     rollout_plan(config, 1))] if shared else []
    seconds = {}
    for name, fn in (("eval", eval_stage(config, model, 0, then)), ("rollouts", rollouts_stage(config, model, 1))):
        started = time.perf_counter()
        rec = runner.run("r0/eval" if name == "eval" else "r1/rollouts", fn)
        seconds[name] = time.perf_counter() - started
        assert rec.outputs == (2 * args.eval if name == "eval" else args.prompts * args.samples), (name, rec)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=int, default=128)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mode", choices=["separate", "shared"])
    args = parser.parse_args()
    model = bench_model()
    if args.mode:  # child process: one measurement, printed as JSON
        print("RESULT " + json.dumps(run_stages(model, args, args.mode == "shared")), flush=True)
        return
    results: dict[str, list[dict]] = {"separate": [], "shared": []}
    for _ in range(args.repeats):
        for mode in results:  # each in a fresh process: no shared engines or caches
            cmd = [sys.executable, __file__, "--mode", mode] + [f"--{k}={v}" for k, v in vars(args).items()
                                                                if k not in ("mode", "repeats")]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{mode} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            results[mode].append(json.loads(line[7:]))
    print(f"eval questions={args.eval} (CoT + direct) rollout questions={args.prompts} samples={args.samples} "
          f"tokens={args.tokens}")
    for mode, runs in results.items():
        for s in runs:
            print(f"{mode:9s}: eval {s['eval']:6.1f} s + rollouts {s['rollouts']:6.1f} s = {sum(s.values()):6.1f} s")
    sep, shared = (sum(sum(s.values()) for s in runs) / len(runs) for runs in results.values())
    print(f"mean: separate {sep:.1f} s, one pass {shared:.1f} s; one pass saves {sep - shared:.1f} s "
          f"({100 * (sep - shared) / sep:.0f}%): {sep / shared:.2f}x")


if __name__ == "__main__":
    main()
