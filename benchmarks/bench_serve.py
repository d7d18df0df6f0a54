"""Bounded load on the Ray Serve endpoint and, in the same run, on vLLM's own OpenAI server of the same model.

    .venv/bin/python benchmarks/bench_serve.py                      # tiny Qwen2-VL, 500 requests, concurrency 16
    .venv/bin/python benchmarks/bench_serve.py --model DIR --requests 200 --concurrency 8 --max-tokens 64

Both servers get the same requests (image data URLs, fixed seeds, same sampling) from the `openai` async
client. Both are started (one after the other), warmed up, then loaded in alternating rounds, one server at a
time (never both at once: the machine has 2 cores), so other processes' load on a shared machine hits both
alike. Ray's idle processes (GCS, raylet, controller) stay up during vLLM's rounds: about 2-4% of a core. Printed
per server: errors, p50/p99 latency, requests/s, generated tokens/s (from the responses' usage); then the
throughput ratio Serve / vLLM (target >= 0.9). Only 127.0.0.1 is contacted. `--out FILE` also writes JSON.
Serve's ingress is HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1, as the RayService runs it; docs/serving.md); run with
RAY_SERVE_ENABLE_HA_PROXY=0 to measure Serve's Python proxy actor instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "sk-bench-local"  # loopback only; both servers are started and stopped by this script
MODEL = "reasoner"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_urls(count: int = 8) -> list[str]:
    from PIL import Image

    urls = []
    for i in range(count):
        buf = io.BytesIO()
        Image.new("RGB", (48 + 8 * i, 48), ((37 * i) % 256, (91 * i) % 256, 160)).save(buf, "PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return urls


class LoadResult:
    """Latencies, generated tokens, errors and busy wall time of one server, summed over its rounds."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.tokens: list[int] = []
        self.errors: list[str] = []
        self.wall_s = 0.0

    def summary(self, concurrency: int) -> dict:
        ordered = sorted(self.latencies) or [float("nan")]
        return {
            "requests": len(self.latencies) + len(self.errors), "concurrency": concurrency,
            "errors": len(self.errors), "error_examples": self.errors[:3], "busy_wall_s": round(self.wall_s, 2),
            "requests_per_s": round(len(self.latencies) / self.wall_s, 2),
            "p50_ms": round(1000 * statistics.median(ordered), 1),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "generated_tokens": sum(self.tokens), "generated_tokens_per_s": round(sum(self.tokens) / self.wall_s, 1),
        }


async def run_load(base_url: str, first: int, count: int, concurrency: int, max_tokens: int,
                   result: LoadResult | None) -> None:
    """Requests first..first+count-1 (request i always has the same image, text and seed on both servers)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=120)
    urls = image_urls()
    semaphore = asyncio.Semaphore(concurrency)
    sink = result or LoadResult()  # None: a warm-up, not measured

    async def one(i: int) -> None:
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": urls[i % len(urls)]}},
                                                 {"type": "text", "text": f"Question {i}: what color is it?"}]}]
        async with semaphore:
            started = time.perf_counter()
            try:
                reply = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens,
                                                             temperature=1.0, seed=i)
                sink.latencies.append(time.perf_counter() - started)
                sink.tokens.append(reply.usage.completion_tokens)
            except Exception as err:  # noqa: BLE001 - counted and reported, the run goes on
                sink.errors.append(repr(err)[:200])

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    sink.wall_s += time.perf_counter() - started
    await client.close()


def start_ray_serve(model: str, args, stack: ExitStack) -> str:
    import ray
    from ray import serve as ray_serve

    from reasoner_ray.core.config import ServeConfig
    from reasoner_ray.ray_utils import init_ray
    from serve.local import start_local

    with tempfile.NamedTemporaryFile("w", dir=ROOT / ".tmp", suffix=".keys", delete=False) as secret:
        secret.write(KEY + "\n")
    stack.callback(os.unlink, secret.name)
    # Ray starts workers at nice 15; the load generator and vLLM's server run at 0. Equal priority keeps the
    # comparison about the serving stacks, not about who the scheduler favours on a shared 2-core machine.
    os.environ.setdefault("RAY_worker_niceness", "0")
    init_ray(num_cpus=2)
    stack.callback(ray.shutdown)
    stack.callback(ray_serve.shutdown)
    config = ServeConfig(model_path=model, model_name=MODEL, api_keys_file=secret.name,
                         max_model_len=args.max_model_len, kv_cache_gib=args.kv_cache_gib,
                         max_ongoing_requests=max(64, 2 * args.concurrency))
    return start_local(config, port=free_port())


def start_vllm_server(model: str, args, stack: ExitStack) -> str:
    from reasoner_ray.engines.vllm_env import has_cuda, vllm_process_env

    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
               "--port", str(port), "--served-model-name", MODEL, "--api-key", KEY, "--dtype", "float32",
               "--max-model-len", str(args.max_model_len), "--enforce-eager", "--limit-mm-per-prompt", '{"image": 1}',
               "--disable-log-stats"]
    if not has_cuda():  # the replica's engine settings (vllm_env.device_engine_args); seeded load crashes it otherwise
        command.append("--no-enable-chunked-prefill")
    env = {**os.environ, **vllm_process_env(args.kv_cache_gib)}
    log_path = ROOT / ".tmp" / "bench_vllm_server.log"
    log = stack.enter_context(open(log_path, "w"))
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.callback(proc.wait, 60)
    stack.callback(proc.terminate)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"vLLM server not ready in 300 s; see {log_path}")


def compare(model: str, args) -> dict:
    """Both servers up (started one after the other), then rounds that load one server at a time, alternating
    which goes first, so load from other processes on a shared machine hits both alike."""
    with ExitStack() as stack:
        urls = {"ray_serve": start_ray_serve(model, args, stack), "vllm_server": start_vllm_server(model, args, stack)}
        results = {name: LoadResult() for name in urls}
        for url in urls.values():
            asyncio.run(run_load(url, 0, 2 * args.concurrency, args.concurrency, args.max_tokens, None))
        per_round = args.requests // args.rounds
        for r in range(args.rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for name in order:
                asyncio.run(run_load(urls[name], r * per_round, per_round, args.concurrency, args.max_tokens,
                                     results[name]))
        return {name: result.summary(args.concurrency) for name, result in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the tiny Qwen2-VL, built if missing)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds the requests are split into")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--kv-cache-gib", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("REASONER_CACHE_ROOT", str(ROOT))
    (ROOT / ".tmp").mkdir(exist_ok=True)
    model = args.model
    if model is None:
        from reasoner_ray.core.config import TinyModelConfig
        from reasoner_ray.models.tiny import ensure_tiny_model

        model = str(ensure_tiny_model("qwen2_vl", TinyModelConfig(), 0, ROOT / "models"))
    # Before init_ray starts Ray: Serve's controller reads it when it starts.
    os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
    ingress = "haproxy" if os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1" else "serve proxy actor"
    results = {"model": model, "serve_ingress": ingress, **compare(model, args)}
    results["throughput_ratio"] = round(
        results["ray_serve"]["generated_tokens_per_s"] / max(results["vllm_server"]["generated_tokens_per_s"], 1e-9), 3)
    for name in ("ray_serve", "vllm_server"):
        r = results[name]
        print(f"{name:12s} requests={r['requests']} errors={r['errors']} p50={r['p50_ms']} ms p99={r['p99_ms']} ms "
              f"req/s={r['requests_per_s']} gen tok/s={r['generated_tokens_per_s']} ({r['generated_tokens']} tokens)")
    print(f"throughput ratio (Ray Serve through {ingress} / vLLM server): {results['throughput_ratio']} (target >= 0.9)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0 if results["ray_serve"]["errors"] == 0 and results["vllm_server"]["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
