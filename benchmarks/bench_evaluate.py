"""Evaluation against an OpenAI-compatible endpoint: requests per second vs the concurrency bound (issue 16's
check, by the distillation benchmark's method).

Run:  python benchmarks/bench_evaluate.py [--questions 1000] [--latency-ms 500] [--concurrency 64] [--actors 1]

The endpoint is the stand-in teacher answering every request after `--latency-ms`, so `concurrency / latency`
(128 requests/s at 64 and 500 ms) bounds the evaluation; the target is >= 90% of it. Each question is asked in
both styles (CoT and direct). Throughput is read from the endpoint's own request log (requests received per
second from the first to the last), and end to end (replies / wall time of `evaluate_source`, which includes
reading the questions, starting the actors, scoring and writing). A fresh cache, so every reply is a request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_distill import requests_per_s  # noqa: E402

from reasoner_ray.core.config import build_config  # noqa: E402
from reasoner_ray.teacher.launch import LocalTeacher  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=1000)
    p.add_argument("--latency-ms", type=float, default=500.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--actors", type=int, default=1)
    args = p.parse_args(argv)
    from reasoner_ray.pipeline.evaluation import evaluate_source
    from reasoner_ray.pipeline.generate import EndpointBackend
    from reasoner_ray.ray_utils import init_ray

    init_ray()
    bound = args.concurrency / (args.latency_ms / 1000)
    work = Path(tempfile.mkdtemp(prefix="bench_evaluate-", dir=os.environ.get("REASONER_TMP", ".tmp")))
    log_path = work / "requests.jsonl"
    with LocalTeacher("easy_vqa:test", latency_ms=args.latency_ms, request_log=log_path) as endpoint:
        config = build_config({}, [f"data.eval.limit={args.questions}", "data.eval.split=test", "eval.max_tokens=64",
                                   f"evaluate.endpoint.base_url={endpoint.base_url}", "evaluate.endpoint.model=local-teacher",
                                   f"evaluate.endpoint.concurrency={args.concurrency}"])
        backend = EndpointBackend(config.evaluate.endpoint, str(work / "cache"), actors=args.actors)
        t0 = time.monotonic()
        result = evaluate_source(config, backend, config.data.eval, work / "out")
        wall = time.monotonic() - t0
    sent, rate = requests_per_s(log_path, 0)
    print(f"\nbound: concurrency {args.concurrency} / latency {args.latency_ms:.0f} ms = {bound:.1f} requests/s")
    print(f"{result.questions} questions x 2 styles = {sent} requests: {rate:.1f} requests/s at the endpoint "
          f"({100 * rate / bound:.1f}% of bound); end to end {result.replies / wall:.1f} replies/s in {wall:.1f} s "
          f"(CoT accuracy {100 * result.summary['cot']['all']['accuracy']:.1f}%)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
