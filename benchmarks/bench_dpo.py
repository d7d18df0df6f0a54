"""DPO throughput: this project vs TRL's DPOTrainer on a ~20M-parameter tiny Qwen2-VL and the same 256 pairs.

    python benchmarks/bench_dpo.py [--pairs 256] [--batch 8] [--threads 2]

Each variant runs in its own fresh subprocess (one after another, same machine, same batch size, one epoch, AdamW
at the same lr), so peak RSS is per variant. Both training loops run in-process with a single worker (no Ray,
no DeepSpeed) for a like-for-like comparison of the DPO computation itself. Variants:
    trl            TRL DPOTrainer, live reference model (what TRL does for vision data)
    ours_full      precomputed reference log-probs (the pass is timed), one sequence per response
    ours_shared    precomputed reference log-probs, image + prompt run once per pair (KV cache shared), padded
    ours_sampled   (the defaults) as ours_shared, with the reference log-probs the rollout engine returned for the chains the
                   reference sampled (dpo.reuse_sampled_logps): no pass; its reference cost is what returning
                   them adds to sampling, measured with the stage's vLLM engine (VLLMGenerator) generating two
                   chains of the pairs' mean length per question with and without log-probs (best of two each)
    ours_packed    as ours_sampled with the prompts and responses packed without pads (dpo.pack_pairs=true)
pairs/s counts the 256 pairs over the wall time of training, plus (ours) the reference cost. The "ours"
variants train on TRL's tokens (the whole rendered turn) except ours_sampled and ours_packed, whose completions
end at the end-of-turn token the engine samples (one token fewer per response on Qwen: the template's newline).
The fixed pairs' text is not what the random benchmark model samples, so those two take the numbers from an
untimed pass; tests/train/test_sampled_reference.py checks that sampled and computed sums agree (1e-4).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_SIZE = dict(text_hidden_size=512, text_layers=8, text_heads=8, text_kv_heads=4, intermediate_size=1024,
                  vision_hidden_size=128, vision_depth=2, vision_heads=4)


def build_inputs(n_pairs: int):
    from reasoner_ray.core.config import TinyModelConfig
    from reasoner_ray.models.tiny import ensure_tiny_model

    sys.path.insert(0, str(ROOT / "tests" / "train"))
    from conftest import make_pairs  # the same easy-VQA pairs the tests use (~30-token responses)

    model = ensure_tiny_model("qwen2_vl", TinyModelConfig(**BENCH_SIZE), 0, ROOT / "models")
    return str(model), make_pairs(n_pairs)


def run_trl(model_path, pairs, batch, lr):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from reasoner_ray.core.prompts import assistant_message
    from reasoner_ray.data.images import open_image
    from reasoner_ray.models.loading import load_model_and_processor

    policy, processor = load_model_and_processor(model_path)
    ref, _ = load_model_and_processor(model_path)
    data = Dataset.from_list([{"images": [open_image(p.image)], "prompt": p.messages, "chosen": [assistant_message(p.chosen)],
                               "rejected": [assistant_message(p.rejected)]} for p in pairs])
    args = DPOConfig(output_dir=str(ROOT / ".tmp" / "bench_trl"), use_cpu=True, bf16=False, beta=0.1, learning_rate=lr,
                     per_device_train_batch_size=batch, num_train_epochs=1, remove_unused_columns=False, report_to=[],
                     save_strategy="no", logging_steps=10**6, max_length=None, disable_tqdm=True, seed=0)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data, processing_class=processor)
    start = time.perf_counter()
    trainer.train()
    return {"seconds": time.perf_counter() - start}


def sampling_logprob_cost(model_path, pairs) -> dict:
    """Seconds vLLM takes to sample two chains per pair's question, without and with each token's log-prob."""
    from reasoner_ray.engines.vllm_generator import EngineSettings, VLLMGenerator

    sys.path.insert(0, str(ROOT / "tests" / "train"))
    from conftest import make_vqa_rows

    from reasoner_ray.models.loading import load_model_and_processor
    from reasoner_ray.train.collate import VLMEncoder

    encoder = VLMEncoder(load_model_and_processor(model_path)[1], turn_tail=False)
    lengths = [len(encoder.completion_ids(p.messages, text)) for p in pairs for text in (p.chosen, p.rejected)]
    tokens = round(sum(lengths) / len(lengths))
    rows = make_vqa_rows(len(pairs))
    seconds: dict[bool, list[float]] = {False: [], True: []}
    with VLLMGenerator(EngineSettings(model_path=model_path, max_model_len=1024, kv_cache_gib=1)) as engine:
        engine.generate(rows[:8], "cot", n=2, temperature=1.0, max_tokens=tokens, seed=1, ignore_eos=True)  # warm-up
        for logprobs in (False, True, False, True):
            start = time.perf_counter()
            engine.generate(rows, "cot", n=2, temperature=1.0, max_tokens=tokens, seed=0, ignore_eos=True,
                            logprobs=logprobs)
            seconds[logprobs].append(time.perf_counter() - start)
    plain, with_logprobs = min(seconds[False]), min(seconds[True])
    return {"tokens_per_chain": tokens, "sampling_seconds": plain, "sampling_with_logprobs_seconds": with_logprobs,
            "logprob_cost_seconds": max(0.0, with_logprobs - plain)}


# variant -> (config overrides, reference log-probs from sampling)
OURS = {"ours_full": (["dpo.share_prompt=false"], False), "ours_shared": ([], False),
        "ours_sampled": ([], True), "ours_packed": (["dpo.pack_pairs=true"], True)}


def run_ours(model_path, pairs, batch, lr, overrides, sampled):
    import torch

    from reasoner_ray.core.config import build_config
    from reasoner_ray.models.loading import load_model_and_processor
    from reasoner_ray.train.data import preference_examples
    from reasoner_ray.train.model_setup import make_optimizer
    from reasoner_ray.train.reference import reference_logps
    from reasoner_ray.train.steps import RECIPES, dpo_pair_layout

    config = build_config({}, ["dpo.beta=0.1", "train.max_length=1024", f"dpo.reuse_sampled_logps={sampled}",
                               *overrides])
    model, processor = load_model_and_processor(model_path)
    encoder = RECIPES["dpo"].encoder(processor, config)
    examples = preference_examples(pairs)
    start = time.perf_counter()
    logps = reference_logps(model, encoder, examples, 16, config.train.max_length, dpo_pair_layout(config, model))
    ref_seconds = time.perf_counter() - start
    if sampled:  # the rollout engine returned these: their cost is measured in sampling_logprob_cost
        start, ref_seconds = time.perf_counter(), 0.0
    for ex, (c, r) in zip(examples, logps):
        ex["ref_chosen_logp"], ex["ref_rejected_logp"] = c, r
    model.train()
    optimizer = make_optimizer(model, lr, None, 0.0)  # the training loop's (fused) AdamW; TRL's default is fused too
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    for s in range(0, len(order), batch):
        chunk = RECIPES["dpo"].collate(encoder, [examples[i] for i in order[s:s + batch]], config.train.max_length)
        loss, _ = RECIPES["dpo"].loss(model, chunk, encoder, config)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"seconds": time.perf_counter() - start, "reference_pass_seconds": ref_seconds}


def _variant(name, args, queue):
    import torch

    torch.set_num_threads(args.threads)
    model_path, pairs = build_inputs(args.pairs)
    lr = 5e-7
    if name == "trl":
        out = run_trl(model_path, pairs, args.batch, lr)
    elif name == "sampling":
        out = sampling_logprob_cost(model_path, pairs)
        queue.put(out)
        return
    else:
        out = run_ours(model_path, pairs, args.batch, lr, *OURS[name])
    params = sum(p.numel() for p in __import__("reasoner_ray.models.loading", fromlist=["x"]).load_model_and_processor(model_path)[0].parameters())
    out.update(variant=name, pairs=args.pairs, pairs_per_s=args.pairs / out["seconds"], params=params,
               peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    queue.put(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="trl,ours_full,ours_shared,ours_sampled,ours_packed")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    build_inputs(args.pairs)  # build the model once before timing anything
    ctx = mp.get_context("spawn")
    results = {}
    variants = args.variants.split(",")
    if any(OURS[v][1] for v in variants if v in OURS):  # their reference cost: measured first, added to their time
        queue = ctx.Queue()
        proc = ctx.Process(target=_variant, args=("sampling", args, queue))
        proc.start()
        cost = queue.get()
        proc.join()
        print(f"sampling {args.pairs} x 2 chains of {cost['tokens_per_chain']} tokens with vLLM: "
              f"{cost['sampling_seconds']:.2f} s, with log-probs {cost['sampling_with_logprobs_seconds']:.2f} s",
              flush=True)
    for name in variants:
        queue = ctx.Queue()
        proc = ctx.Process(target=_variant, args=(name, args, queue))
        proc.start()
        results[name] = queue.get()
        proc.join()
        r = results[name]
        if name in OURS and OURS[name][1]:
            r["reference_pass_seconds"] = cost["logprob_cost_seconds"]
            r["seconds"] += cost["logprob_cost_seconds"]
            r["pairs_per_s"] = args.pairs / r["seconds"]
        print(f"{name:12s} {r['pairs_per_s']:6.2f} pairs/s  {r['seconds']:7.1f} s  peak RSS {r['peak_rss_gib']:.2f} GiB"
              + (f"  (reference cost {r['reference_pass_seconds']:.1f} s)" if "reference_pass_seconds" in r else ""),
              flush=True)
    if "trl" in results:
        print(f"model: {results['trl']['params'] / 1e6:.1f}M parameters, {args.pairs} pairs, batch {args.batch}, "
              f"{args.threads} torch threads")
        for name in results:
            if name != "trl":
                print(f"ratio {name} / trl: {results[name]['pairs_per_s'] / results['trl']['pairs_per_s']:.2f}x")
    if any(OURS[v][1] for v in variants if v in OURS):
        results["sampling"] = cost
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
