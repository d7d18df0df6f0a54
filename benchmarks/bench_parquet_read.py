"""What a stage's first Parquet read costs with Ray Data's footer-reader pool at its default size (32 actors per
read) and at the size the project sets (init_ray: RAY_DATA_PARQUET_FOOTER_NUM_ACTORS=2).

Run:  python benchmarks/bench_parquet_read.py [--repeats 2] [--sizes 32 2]

Each repeat runs every size in turn, each in a fresh local Ray instance (a subprocess, as a job starts one), and
times the read the rewards, evaluation and verify stages make: read a folder of scored-reply Parquet files, map
each batch, write Parquet. Absolute times vary with the machine's load; compare the sizes within one repeat.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_READ = """
import os, sys, time
sys.path.insert(0, {root!r})
import pandas as pd
import ray
from reasoner_ray.ray_utils import init_ray

folder = sys.argv[1]
init_ray()
for i in range(4):  # a stage's output: a few files of a few hundred rows
    pd.DataFrame({{"question_id": range(i * 500, i * 500 + 500), "text": ["x" * 200] * 500}}).to_parquet(
        f"{{folder}}/in/part-{{i}}.parquet")
ray.data.range(2).materialize()  # Ray's workers are up, as in a stage after the first
start = time.perf_counter()
ray.data.read_parquet(f"{{folder}}/in").map_batches(lambda b: b, batch_format="pandas", num_cpus=0.5) \\
    .write_parquet(f"{{folder}}/out")
print(f"{{time.perf_counter() - start:.2f}}")
"""


def one_read(actors: int) -> float:
    with tempfile.TemporaryDirectory(dir=ROOT / ".tmp") as folder:
        os.makedirs(f"{folder}/in")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] = str(actors)
        out = subprocess.run([sys.executable, "-c", ONE_READ.format(root=str(ROOT)), folder], env=env,
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 2])
    args = parser.parse_args()
    (ROOT / ".tmp").mkdir(exist_ok=True)
    times: dict[int, list[float]] = {size: [] for size in args.sizes}
    for repeat in range(args.repeats):
        for size in args.sizes:
            times[size].append(one_read(size))
            print(f"repeat {repeat + 1}: {size:3d} footer actors: read, map, write in {times[size][-1]:.2f} s", flush=True)
    for size, seconds in times.items():
        print(f"{size:3d} footer actors: median {sorted(seconds)[len(seconds) // 2]:.2f} s over {len(seconds)} repeats")


if __name__ == "__main__":
    main()
