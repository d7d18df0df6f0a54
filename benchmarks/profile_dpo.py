"""Where a DPO step's time goes: torch.profiler over our shared-prompt DPO step on bench_dpo.py's model and pairs,
plus the pad fraction of the batches.

    .venv/bin/python benchmarks/profile_dpo.py [--steps 8] [--batch 8] [--threads 2]

Prints the share of response-row and prompt tokens that are padding (batches of `--batch` pairs in order), the
wall time of `--steps` training steps (after one warm-up step), the top ops by self CPU time, and the split
between forward (the loss) and backward from cProfile. Reference log-probs are constants here: the reference
pass is measured by bench_dpo.py.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench_dpo import build_inputs
    from reasoner_ray.core.config import build_config
    from reasoner_ray.models.loading import load_model_and_processor
    from reasoner_ray.train.collate import VLMEncoder, collate_pairs
    from reasoner_ray.train.data import preference_examples
    from reasoner_ray.train.model_setup import make_optimizer
    from reasoner_ray.train.steps import RECIPES

    torch.set_num_threads(args.threads)
    n_pairs = args.batch * (2 * args.steps + 1)
    model_path, pairs = build_inputs(max(256, n_pairs))
    config = build_config({}, ["dpo.beta=0.1", "dpo.share_prompt=true", "train.max_length=1024"])
    model, processor = load_model_and_processor(model_path)
    encoder = VLMEncoder(processor)
    examples = preference_examples(pairs)
    for ex in examples:
        ex["ref_chosen_logp"], ex["ref_rejected_logp"] = -30.0, -30.0

    real = total = prompt_real = prompt_total = 0
    for start in range(0, len(examples), args.batch):
        batch = collate_pairs(encoder, examples[start:start + args.batch], config.train.max_length)
        real += int(batch["completion_mask"].sum())
        total += batch["completion_mask"].numel()
        prompt_real += int(batch["prompt"]["attention_mask"].sum())
        prompt_total += batch["prompt"]["attention_mask"].numel()
    print(f"response rows: {real}/{total} tokens real (pad {1 - real / total:.1%}); prompts: {prompt_real}/"
          f"{prompt_total} (pad {1 - prompt_real / prompt_total:.1%}); per pair {prompt_real / len(examples):.0f} "
          f"prompt tokens, {real / 2 / len(examples):.0f} per response")

    model.train()
    optimizer = make_optimizer(model, 1e-7, None, 0.0)  # the training loop's

    def step(chunk):
        batch = RECIPES["dpo"].collate(encoder, chunk, config.train.max_length)
        loss, _ = RECIPES["dpo"].loss(model, batch, encoder, config)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    b = args.batch
    step(examples[:b])  # warm-up
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.steps):
            step(examples[b * (1 + i):b * (2 + i)])
    print(f"{args.steps} steps of {b} pairs: {time.perf_counter() - started:.1f} s (under the profiler)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(args.steps):
        step(examples[b * (1 + args.steps + i):b * (2 + args.steps + i)])
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats("backward|_dpo_loss|optimizer", 6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
