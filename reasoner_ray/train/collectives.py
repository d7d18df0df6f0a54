"""The training path's collectives, on the device the process group needs: NCCL (GPU workers) has no CPU
device, so a CPU tensor handed to it fails ("No backend type associated with device type cpu"); gloo (CPU
workers) takes CPU tensors. Every `torch.distributed` collective of reasoner_ray/train goes through here (a
test checks the source for any other).
"""

from __future__ import annotations


def collective_device():
    """The current CUDA device under NCCL, else the CPU."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def all_reduce_sum(values: list[float]) -> list[float]:
    """The element-wise sum of `values` over all ranks (the values themselves with one rank)."""
    import torch
    import torch.distributed as dist

    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=collective_device())
    dist.all_reduce(t)
    return t.tolist()
