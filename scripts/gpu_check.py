"""The GPU path end to end on this machine's GPUs, with figures (run by scripts/gpu_check.sh).

1. The main job, tiny and short, on the GPUs: vLLM rollouts and evaluation on CUDA, DeepSpeed SFT and DPO in
   bf16 over `--workers` GPU workers (NCCL, full-sequence pairs under gradient checkpointing as the paper config
   trains), the reference pass and the verifier's log-probs as Ray tasks on the GPUs.
2. The DPO model behind the Ray Serve endpoint, called with the `openai` client at 16 requests in flight.
Prints the device, what ran where (peak GPU memory sampled by nvidia-smi during each part), and the figures:
rollout tokens/s, DPO pairs/s, reference pairs/s, endpoint requests/s. Exit code 0 only if every part ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.train.limit=2000", "sft.epochs=1", "rollout.limit=128", "rollout.samples_per_temperature=4",
        "rollout.max_tokens=96", "data.eval.limit=200", "eval.max_tokens=96", "rounds=1", "pairs.accuracy_band=[0.0,1.0]",
        "model.dtype=bfloat16", "train.use_gpu=true", "rollout.gpu_memory_utilization=0.3",
        # the paper config's full-sequence DPO layout; the verifier's log-prob tasks; rollouts timed on their own
        # engine (not generated in the evaluation's pass)
        "train.gradient_checkpointing=true", "eval.samples=2", "rollout.reuse_eval_engines=false"]


class GpuMemory:
    """Peak `memory.used` (MiB) over all GPUs, sampled every 0.5 s while the block runs."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout
            self.peak = max(self.peak, sum(int(v) for v in out.split() if v.strip().isdigit()))

    def __enter__(self) -> "GpuMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_job(run_dir: Path, workers: int, overrides: list[str]) -> dict:
    cmd = [sys.executable, "jobs/iterative_dpo.py", "--config", "configs/easy_vqa.yaml", f"run.dir={run_dir}",
           f"train.num_workers={workers}", *TINY, *overrides]
    with GpuMemory() as mem:
        started = time.time()
        done = subprocess.run(cmd, cwd=ROOT)
        wall = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"gpu_check: the main job failed (exit {done.returncode}); see {run_dir}/logs/driver.log")
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    return {"stages": stages, "wall_s": wall, "peak_gpu_mib": mem.peak}


def rollout_tokens(run_dir: Path) -> int:
    import pyarrow.dataset as pads

    table = pads.dataset(str(run_dir / "rounds/r1/rollouts/output"), format="parquet").to_table(["completion_tokens"])
    return int(sum(table["completion_tokens"].to_pylist()))


def serve_figures(model: str, requests: int, concurrency: int) -> dict:
    import base64
    import io

    import openai
    from PIL import Image

    from reasoner_ray.core.config import ServeConfig
    from reasoner_ray.ray_utils import init_ray
    from serve.local import start_local

    os.environ["GPU_CHECK_KEYS"] = key = "sk-gpu-check"
    init_ray()
    with GpuMemory() as mem:
        url = start_local(ServeConfig(model_path=model, model_name="gpu-check", api_keys_env="GPU_CHECK_KEYS",
                                      dtype="bfloat16", max_ongoing_requests=64, replica_gpus=1), port=8765)
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, "PNG")
        image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                                 {"type": "text", "text": "What colour is the image?"}]}]

        def one(_):
            return client.chat.completions.create(model="gpu-check", messages=messages, max_tokens=64).usage.completion_tokens

        started = time.time()
        with ThreadPoolExecutor(concurrency) as pool:
            tokens = sum(pool.map(one, range(requests)))
        wall = time.time() - started
    return {"requests_per_s": requests / wall, "tokens_per_s": tokens / wall, "peak_gpu_mib": mem.peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default=str(ROOT / ".tmp" / "gpu-check"))
    p.add_argument("--workers", type=int, default=1, help="GPU training workers (default 1; NCCL needs >= 2)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): "
          f"{[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}", flush=True)
    run_dir = Path(args.run_dir)
    job = run_job(run_dir, args.workers, args.overrides)
    s = job["stages"]
    seconds = {k: round(v["seconds"], 1) for k, v in s.items()}
    pairs = s["r1/pairs"]["outputs"]
    print(f"\nmain job: {job['wall_s']:.0f} s, peak GPU memory {job['peak_gpu_mib']} MiB; stage seconds {seconds}")
    print(f"rollouts (vLLM on CUDA): {rollout_tokens(run_dir) / s['r1/rollouts']['seconds']:.0f} generated tokens/s "
          f"incl. engine start")
    ref = s["r1/reference"]["extra"]["counts"]
    print(f"reference log-probs: {ref.get('from_rollouts', 0)} pairs from the rollout engines, "
          f"{ref.get('from_pass', 0)} from the pass (Ray tasks on GPU) in {s['r1/reference']['seconds']:.1f} s "
          "incl. model load")
    print(f"DPO (DeepSpeed bf16, {args.workers} worker(s)): {pairs / s['r1/dpo']['seconds']:.1f} pairs/s incl. start")
    print(f"eval after DPO: CoT {100 * s['r1/eval']['extra']['cot']['accuracy']:.1f}%; verifier (log-prob tasks on "
          f"GPU): {s['r1/verify']['outputs']} chains in {s['r1/verify']['seconds']:.1f} s")
    serve = serve_figures(str(run_dir / "rounds/r1/dpo/output/model"), requests=256, concurrency=16)
    print(f"endpoint (Ray Serve + vLLM on CUDA): {serve['requests_per_s']:.1f} requests/s, "
          f"{serve['tokens_per_s']:.0f} tokens/s at 16 in flight, peak GPU memory {serve['peak_gpu_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
