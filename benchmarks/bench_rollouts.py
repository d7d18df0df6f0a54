"""Rollout throughput: the whole Ray Data rollout stage vs bare vLLM vs batched transformers generate.

    python benchmarks/bench_rollouts.py [--prompts 64] [--samples 8] [--tokens 64] [--engines 1]

One run, same machine, same prompts (easy-VQA test images) and sample count, fixed-length outputs
(ignore_eos), on a ~20M-parameter tiny Qwen2-VL where compute matters. Prints generated tokens/s of:
  (a) the rollout stage (reasoner_ray.pipeline.stages.rollouts.rollouts_stage: Ray Data + vLLM actors),
      wall time of the whole stage including actor and engine start, and its generation-only rate;
  (b) bare `vllm.LLM.generate` with one engine set up as the stage sets up each of its engines (in-process
      engine core, threads pinned to the engine's share of the cores), generate call only and including engine
      start; and (b0) the same with vLLM's defaults (engine core in a child process, vLLM's own thread binding);
  (c) transformers `generate` batched with num_return_sequences, torch using every core;
and the ratios (a)/(b) per engine and (a)/(c).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_SIZE = dict(text_hidden_size=512, text_layers=8, text_heads=8, text_kv_heads=4, intermediate_size=1024,
                  vision_hidden_size=128, vision_depth=2, vision_heads=4)


def bench_model() -> str:
    from reasoner_ray.core.config import TinyModelConfig
    from reasoner_ray.models.tiny import ensure_tiny_model

    return str(ensure_tiny_model("qwen2_vl", TinyModelConfig(**BENCH_SIZE), 0, ROOT / "models"))


def rows(n: int):
    from reasoner_ray.core.config import DataSource
    from reasoner_ray.data.readers import iter_rows

    return list(iter_rows(DataSource(format="easy_vqa", split="test", limit=n)))


def run_stage(model: str, args) -> dict:
    from reasoner_ray.core.config import build_config
    from reasoner_ray.pipeline.stages.rollouts import rollouts_stage
    from reasoner_ray.pipeline.runner import StageRunner
    from reasoner_ray.ray_utils import init_ray

    init_ray()
    run_dir = tempfile.mkdtemp(prefix="bench-rollouts-", dir=ROOT / ".tmp")
    config = build_config({
        "run": {"dir": run_dir},
        "data": {"train": {"format": "easy_vqa", "split": "test", "limit": args.prompts}},
        "rollout": {"samples_per_temperature": args.samples, "temperatures": [1.0], "max_tokens": args.tokens,
                    "num_engines": args.engines, "batch_size": max(1, args.prompts // args.engines),
                    "max_model_len": 1024, "kv_cache_gib": 2, "ignore_eos": True},
    })
    started = time.perf_counter()
    rec = StageRunner(config).run("r1/rollouts", rollouts_stage(config, model, 1))
    wall = time.perf_counter() - started
    import pyarrow.dataset as pads

    tokens = sum(pads.dataset(str(Path(run_dir) / "rounds/r1/rollouts/output"), format="parquet")
                 .to_table(columns=["completion_tokens"]).column("completion_tokens").to_pylist())
    assert rec.outputs == args.prompts * args.samples
    return {"tokens": tokens, "wall_s": wall}


def run_bare_vllm(model: str, args, cpu_cores: int | None = None) -> dict:
    from reasoner_ray.engines.vllm_generator import EngineSettings, VLLMGenerator

    if cpu_cores is None:  # the stage's share per engine (reasoner_ray.operators.generation.GenerationActor)
        cpu_cores = max(1, len(os.sched_getaffinity(0)) // args.engines)
    qs = rows(args.prompts)
    started = time.perf_counter()
    with VLLMGenerator(EngineSettings(model_path=model, max_model_len=1024, kv_cache_gib=2, cpu_cores=cpu_cores)) as gen:
        ready = time.perf_counter()
        out = gen.generate(qs, "cot", n=args.samples, temperature=1.0, max_tokens=args.tokens, seed=0, ignore_eos=True)
        done = time.perf_counter()
    tokens = sum(s.completion_tokens for r in out for s in r)
    return {"tokens": tokens, "generate_s": done - ready, "with_start_s": done - started}


def run_vllm_defaults(model: str, args) -> dict:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    return run_bare_vllm(model, args, cpu_cores=0)


def run_transformers(model: str, args) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from reasoner_ray.core.prompts import prompt_messages
    from reasoner_ray.data.images import open_image

    torch.set_num_threads(os.cpu_count() or 1)
    proc = AutoProcessor.from_pretrained(model)
    proc.tokenizer.padding_side = "left"
    net = AutoModelForImageTextToText.from_pretrained(model, dtype=torch.float32).eval()
    qs = rows(args.prompts)
    tokens, started = 0, time.perf_counter()
    for i in range(0, len(qs), args.hf_batch):
        chunk = qs[i:i + args.hf_batch]
        texts = [proc.apply_chat_template(prompt_messages(r, "cot"), add_generation_prompt=True, tokenize=False) for r in chunk]
        enc = proc(images=[open_image(r.image) for r in chunk], text=texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = net.generate(**enc, do_sample=True, temperature=1.0, num_return_sequences=args.samples,
                               max_new_tokens=args.tokens, min_new_tokens=args.tokens)
        tokens += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return {"tokens": tokens, "generate_s": time.perf_counter() - started}


MODES = {"stage": run_stage, "vllm": run_bare_vllm, "vllm_defaults": run_vllm_defaults, "transformers": run_transformers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--hf-batch", type=int, default=8)
    parser.add_argument("--mode", choices=sorted(MODES))
    args = parser.parse_args()
    model = bench_model()
    if args.mode:  # child process: one measurement, printed as JSON
        print("RESULT " + json.dumps(MODES[args.mode](model, args)), flush=True)
        return
    results = {}
    for mode in ("vllm", "vllm_defaults", "stage", "transformers"):  # each in a fresh process: no shared engines or caches
        cmd = [sys.executable, __file__, "--mode", mode] + [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k != "mode"]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{mode} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        results[mode] = json.loads(line[7:])
    v, v0, s, t = results["vllm"], results["vllm_defaults"], results["stage"], results["transformers"]
    rate = lambda r, key: r["tokens"] / r[key]  # noqa: E731
    print(f"prompts={args.prompts} samples={args.samples} tokens={args.tokens} engines={args.engines}")
    print(f"(a) rollout stage      : {rate(s, 'wall_s'):8.0f} tok/s (whole stage incl. actor+engine start, {s['wall_s']:.1f} s)")
    print(f"(b) bare vLLM generate : {rate(v, 'generate_s'):8.0f} tok/s (generate only, {v['generate_s']:.1f} s); "
          f"{rate(v, 'with_start_s'):.0f} tok/s incl. engine start")
    print(f"(b0) vLLM defaults     : {rate(v0, 'generate_s'):8.0f} tok/s (generate only, {v0['generate_s']:.1f} s); "
          f"{rate(v0, 'with_start_s'):.0f} tok/s incl. engine start")
    print(f"(c) transformers       : {rate(t, 'generate_s'):8.0f} tok/s ({t['generate_s']:.1f} s)")
    print(f"(a)/(b) per engine, both incl. start : {rate(s, 'wall_s') / args.engines / rate(v, 'with_start_s'):.2f}")
    print(f"(a)/(b) per engine, stage vs generate: {rate(s, 'wall_s') / args.engines / rate(v, 'generate_s'):.2f}")
    print(f"(a)/(b0) per engine, both incl. start: {rate(s, 'wall_s') / args.engines / rate(v0, 'with_start_s'):.2f}")
    print(f"(a)/(c)                              : {rate(s, 'wall_s') / rate(t, 'generate_s'):.2f}")


if __name__ == "__main__":
    main()
