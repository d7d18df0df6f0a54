"""Padding-free DPO micro-batches (`dpo.pack_pairs`) against the padded shared-prompt layout, side by side.

    python benchmarks/bench_dpo_packing.py [--pairs 256] [--batch 8] [--threads 2] [--repeats 2]

Same model and pairs as bench_dpo.py. Counts the tokens each layout of `logprobs.PAIR_LAYOUTS` runs (pads
included) and times a forward + backward of the policy's pair log-probs, over every micro-batch, in two:
    shared   prompt pass (B, P_max), response pass (2B, C_max) over the repeated prompt cache
    packed   the same without pad tokens: the B prompts as one row, the 2B responses as another (dense masks)
after checking that both give the same log-probs (1e-4).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def pad_counts(batch) -> dict[str, int]:
    p_mask, c_mask = batch["prompt"]["attention_mask"], batch["completion_mask"]
    p_len, c_len = p_mask.sum(1), c_mask.sum(1)
    real = int(p_len.sum() + c_len.sum())
    return {"real": real, "shared": p_mask.numel() + c_mask.numel(),
            "trl": int(2 * p_len.shape[0] * (p_len.repeat_interleave(2) + c_len).max()),
            "trl_real": int((p_len.repeat_interleave(2) + c_len).sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from bench_dpo import build_inputs
    from reasoner_ray.core.config import build_config
    from reasoner_ray.models.loading import load_model_and_processor
    from reasoner_ray.train.data import preference_examples
    from reasoner_ray.train.logprobs import pair_logps
    from reasoner_ray.train.steps import RECIPES

    torch.set_num_threads(args.threads)
    model_path, pairs = build_inputs(args.pairs)
    config = build_config({}, ["train.max_length=1024", "dpo.reuse_sampled_logps=true"])
    model, processor = load_model_and_processor(model_path)
    model.train()
    encoder = RECIPES["dpo"].encoder(processor, config)
    examples = preference_examples(pairs)
    batches = [RECIPES["dpo"].collate(encoder, examples[s:s + args.batch], config.train.max_length)
               for s in range(0, len(examples), args.batch)]

    counts = {k: sum(pad_counts(b)[k] for b in batches) for k in ("real", "shared", "trl", "trl_real")}
    print(f"{len(batches)} micro-batches of {args.batch} pairs; tokens run: shared-prompt padded {counts['shared']} "
          f"({1 - counts['real'] / counts['shared']:.1%} pad), full (TRL) layout {counts['trl']} "
          f"({1 - counts['trl_real'] / counts['trl']:.1%} pad), packed {counts['real']} (0 pad)", flush=True)

    with torch.no_grad():
        diff = max(float((torch.cat(pair_logps(model, b, encoder.pad_id, "shared"))
                          - torch.cat(pair_logps(model, b, encoder.pad_id, "packed"))).abs().max()) for b in batches)
    print(f"max |shared - packed| log-prob over all pairs: {diff:.2e}", flush=True)
    if diff > 1e-4:
        raise SystemExit("packed log-probs differ from the padded ones")

    def one_pass(layout: str) -> float:
        start = time.perf_counter()
        for b in batches:
            chosen, rejected = pair_logps(model, b, encoder.pad_id, layout)
            (chosen.sum() - rejected.sum()).backward()
            model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    one_pass("shared"), one_pass("packed")  # warm-up
    seconds: dict[str, list[float]] = {"shared": [], "packed": []}
    for _ in range(args.repeats):
        for name in seconds:
            seconds[name].append(one_pass(name))
    for name, values in seconds.items():
        print(f"{name:6s} forward+backward of {args.pairs} pairs: " + ", ".join(f"{v:.2f}" for v in values)
              + f" s (best {min(values):.2f} s)")
    print(f"time packed / shared: {min(seconds['packed']) / min(seconds['shared']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
