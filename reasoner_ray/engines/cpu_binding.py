"""Give each vLLM CPU engine on a node its own cores.

Left to itself, vLLM's CPU backend binds every engine's threads to the cores of NUMA node 0 minus one core it
reserves for its scheduler: on a 2-core machine each engine computes on core 0 alone and two engines fight over
that core while core 1 idles (measured: 2 engines gave no gain over 1; one engine on both cores ran 1.75x
faster). Here an engine claims a slot, a disjoint run of cores, through an exclusive `flock` on a per-slot
file: the kernel drops the lock when the process dies (even by SIGKILL), so a restarted actor finds its slot
free again, and no coordinator is needed.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class CoreClaim:
    """Cores an engine computes on; the slot stays ours until `release()` or the process ends."""

    cores: list[int]
    fd: int | None = None  # the locked slot file; None when the slot is shared

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops the lock
            self.fd = None


def core_slots(cores: list[int], cores_per_engine: int) -> list[list[int]]:
    """Disjoint runs of `cores_per_engine` cores (the last partial run dropped); one slot of all if too few."""
    k = max(1, cores_per_engine)
    slots = [cores[i:i + k] for i in range(0, len(cores) - k + 1, k)]
    return slots or [cores]


def claim_cores(cores_per_engine: int, lock_dir: str | Path) -> CoreClaim:
    """Lock the first free slot and return its cores; if every slot is taken, share the first (with a warning)."""
    cores = sorted(os.sched_getaffinity(0))
    slots = core_slots(cores, cores_per_engine)
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in slots:
        fd = os.open(lock_dir / f"cores-{slot[0]}-{slot[-1]}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return CoreClaim(slot, fd)
    log.warning("more vLLM engines than %d-core slots on this node: sharing cores %s", len(slots[0]), slots[0])
    return CoreClaim(slots[0])


def pin_engine(cores: list[int]) -> None:
    """Make the vLLM CPU engine built next in this process compute on `cores` only.

    The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0, see vllm_generator.py): pin the process
    and size torch's thread pool to the slot (a Ray actor starts with OMP_NUM_THREADS=1). Should vLLM spawn a
    worker process instead, its own binding gets the same cores and reserves none of them.
    """
    import torch

    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))
    os.environ.update({"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cores)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"})
