"""Remove /dev/shm segments that no live process maps or holds open (leaks of killed vLLM/torch processes).

    python scripts/clean_shm.py [--dry-run]
Only segments of this user that nothing uses are removed, so running engines are never disturbed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def in_use() -> set[str]:
    used: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for line in (proc / "maps").read_text().splitlines():
                if "/dev/shm/" in line:
                    used.add(line.split("/dev/shm/", 1)[1].split(" ")[0])
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("/dev/shm/"):
                    used.add(target[len("/dev/shm/"):].split(" ")[0])
        except OSError:
            continue
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    used, uid = in_use(), os.getuid()
    freed = 0
    for seg in Path("/dev/shm").iterdir():
        try:
            st = seg.stat()
        except OSError:
            continue
        if seg.name in used or st.st_uid != uid or not seg.is_file():
            continue
        freed += st.st_size
        if not args.dry_run:
            seg.unlink(missing_ok=True)
        print(f"{'would remove' if args.dry_run else 'removed'} /dev/shm/{seg.name} ({st.st_size >> 20} MiB)")
    print(f"{freed >> 20} MiB {'reclaimable' if args.dry_run else 'freed'}")


if __name__ == "__main__":
    main()
