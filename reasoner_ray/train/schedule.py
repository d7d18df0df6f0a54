"""Which examples each optimizer step consumes, so a resumed run repeats and skips nothing.

The order is a fixed function of (seed, number of examples, epochs): a fresh permutation per epoch, cut to a
whole number of global batches. Step s consumes order[s*G : (s+1)*G]; within it, micro-batch m of rank r takes
the slice [(m*W + r)*M, (m*W + r + 1)*M). A checkpoint records the consumed count (= steps * G), and a resumed
run starts at that offset of the same order. `lr_ratio` is the learning-rate schedule, as a factor of the peak.
"""

from __future__ import annotations

import math
import random


def sample_order(n: int, epochs: float, global_batch: int, seed: int) -> list[int]:
    if n <= 0:
        raise ValueError("no training examples left (all filtered?)")
    wanted = int(n * epochs) // global_batch * global_batch
    if wanted == 0:
        raise ValueError(f"{n} examples x {epochs} epochs is less than one global batch of {global_batch}: "
                         "lower the global batch size or add data")
    order: list[int] = []
    for epoch in range(math.ceil(wanted / n)):
        perm = list(range(n))
        random.Random(f"{seed}:{epoch}").shuffle(perm)
        order += perm
    return order[:wanted]


def micro_slice(order: list[int], step: int, micro: int, rank: int, world: int, micro_batch: int,
                accumulation: int) -> list[int]:
    """Indices of micro-batch `micro` of `rank` in optimizer step `step`."""
    start = step * world * micro_batch * accumulation + (micro * world + rank) * micro_batch
    return order[start:start + micro_batch]


def lr_ratio(step: int, total_steps: int, warmup_ratio: float) -> float:
    """The factor of the peak lr that optimizer step `step` (0-based) of `total_steps` trains at: linear warmup over
    round(warmup_ratio * total_steps) steps, then cosine decay to zero.

    Every step trains (no factor is 0): DeepSpeed's WarmupCosineLR gives a run's first two steps lr 0, which in a
    DPO round of 5-15 steps threw away a fifth of the update. Warmup step k of w takes (k + 1) / (w + 1); the first
    step after it takes the peak; the last step of the decay stays above zero.
    """
    warmup = int(round(warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(total_steps - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
