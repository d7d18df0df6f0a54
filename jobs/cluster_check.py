"""Check that a Ray cluster can run this project: reads a few easy-VQA rows in Ray tasks and prints counts.

    ray job submit --working-dir . -- python jobs/cluster_check.py --rows 20
Prints one line `cluster_check ok rows=<n> nodes=<k> cpus=<c>` on success.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)

    import ray

    from reasoner_ray.core.config import DataSource
    from reasoner_ray.data.ray_source import read_dataset, split_counts
    from reasoner_ray.ray_utils import init_ray

    init_ray()
    good, bad = split_counts(read_dataset(DataSource(format="easy_vqa", split="test", limit=args.rows)))
    nodes = [n for n in ray.nodes() if n["Alive"]]
    cpus = int(ray.cluster_resources().get("CPU", 0))
    print(f"cluster_check ok rows={good} bad={sum(bad.values())} nodes={len(nodes)} cpus={cpus}")
    return 0 if good == args.rows else 1


if __name__ == "__main__":
    sys.exit(main())
