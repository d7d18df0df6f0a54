"""Distillation throughput and memory against the stand-in teacher (issue 4's performance check).

Run:  python benchmarks/bench_distill.py [--rows 2000] [--scale 10] [--latency-ms 500] [--concurrency 64] [--actors 1]

The teacher answers every request after `--latency-ms`, so `concurrency / latency` (128 requests/s at 64 and
500 ms) bounds the pipeline; the target is >= 90% of it. Throughput is read from the teacher's own request log
(requests received per second from the first to the last), and also end to end from the pipeline's summary.
Peak memory is the largest summed RSS of this driver and every Ray process under it (the teacher excluded),
sampled every 0.2 s, for `--rows` and for `--scale` times as many rows: streaming keeps it flat.
Each run uses a fresh cache folder, so every row is a real request.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from reasoner_ray.core.config import build_config  # noqa: E402
from reasoner_ray.teacher.launch import LocalTeacher  # noqa: E402

EASY_VQA_TRAIN_ROWS = 38_575


class PeakRss:
    """Peak summed RSS of this process and its descendants, except the process trees listed in `exclude`."""

    def __init__(self, exclude: set[int]):
        self.exclude, self.peak, self._stop = exclude, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                if child.pid in self.exclude or any(p.pid in self.exclude for p in child.parents()):
                    continue
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._total())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def requests_per_s(log_path: Path, start_line: int) -> tuple[int, float]:
    stamps = [json.loads(line)["t"] for line in log_path.read_text().splitlines()[start_line:]]
    return len(stamps), len(stamps) / max(1e-9, stamps[-1] - stamps[0])


def run_once(base_url: str, rows: int, concurrency: int, actors: int, work: Path, log_path: Path, teacher_pid: int) -> dict:
    from reasoner_ray.pipeline.distillation import run_distillation

    cfg = build_config({}, [f"teacher.base_url={base_url}", f"teacher.concurrency={concurrency}", "teacher.start_local=false",
                            f"data.train.limit={rows}", f"distill.cache_dir={work / f'cache-{rows}'}", f"run.dir={work}",
                            f"distill.num_actors={actors}", "distill.progress_every_s=10"])
    start_line = len(log_path.read_text().splitlines()) if log_path.exists() else 0
    with PeakRss(exclude={teacher_pid}) as rss:
        t0 = time.monotonic()
        result = run_distillation(cfg, str(work / f"out-{rows}"))
        wall = time.monotonic() - t0
    sent, rate = requests_per_s(log_path, start_line)
    return {"rows": rows, "verified": result.verified, "requests": sent, "requests_per_s": rate,
            "rows_per_s_end_to_end": rows / wall, "wall_s": wall, "peak_rss_gib": rss.peak / 2**30}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--latency-ms", type=float, default=500.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--actors", type=int, default=1, help="distill.num_actors (the concurrency is split over them)")
    args = p.parse_args(argv)
    big = args.rows * args.scale
    if big > EASY_VQA_TRAIN_ROWS:
        p.error(f"--rows x --scale = {big} exceeds easy-VQA train's {EASY_VQA_TRAIN_ROWS} rows")
    from reasoner_ray.ray_utils import init_ray

    init_ray()
    bound = args.concurrency / (args.latency_ms / 1000)
    work = Path(tempfile.mkdtemp(prefix="bench_distill-", dir=os.environ.get("REASONER_TMP", ".tmp")))
    log_path = work / "requests.jsonl"
    with LocalTeacher("easy_vqa:train", latency_ms=args.latency_ms, request_log=log_path) as teacher:
        results = []
        for rows in (args.rows, big):
            # The teacher's process is not the pipeline's: it is left out of the RSS sum.
            results.append(run_once(teacher.base_url, rows, args.concurrency, args.actors, work, log_path, teacher.proc.pid))
    print(f"\nbound: concurrency {args.concurrency} / latency {args.latency_ms:.0f} ms = {bound:.1f} requests/s")
    for r in results:
        print(f"rows {r['rows']:>6}: {r['requests_per_s']:6.1f} requests/s ({100 * r['requests_per_s'] / bound:5.1f}% of bound), "
              f"end to end {r['rows_per_s_end_to_end']:6.1f} rows/s in {r['wall_s']:.1f} s, verified {r['verified']}, "
              f"peak RSS (driver + Ray) {r['peak_rss_gib']:.2f} GiB")
    small, large = results
    print(f"peak RSS ratio {large['rows']} vs {small['rows']} rows: {large['peak_rss_gib'] / small['peak_rss_gib']:.2f}x")
    shutil.rmtree(work, ignore_errors=True)  # caches and outputs of the runs
    return 0


if __name__ == "__main__":
    sys.exit(main())
