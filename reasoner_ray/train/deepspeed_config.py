"""The DeepSpeed config dict, built from the typed config (one place; nothing is read from a JSON file).

ZeRO stage 0-3 with optional CPU offload of optimizer state / parameters, fp32 on CPU, bf16 or fp32 on GPU,
gradient accumulation and clipping.

No optimizer is declared here: the caller passes a torch AdamW to `deepspeed.initialize`, which avoids JIT-
compiling DeepSpeed's fused CPU Adam (about 54 s) on every fresh machine. With optimizer offload DeepSpeed would
insist on its own CPU Adam; `zero_force_ds_cpu_optimizer: false` lets the torch optimizer through. Nor is the lr
schedule: the loop passes a torch LambdaLR over `schedule.lr_ratio` (DeepSpeed's WarmupCosineLR trains a run's first
two steps at lr 0).
"""

from __future__ import annotations

from typing import Any

from reasoner_ray.core.config import TrainConfig
from reasoner_ray.models.loading import resolve_dtype


def micro_batch_size(train: TrainConfig, global_batch_size: int, world_size: int) -> int:
    per_step = world_size * train.gradient_accumulation_steps
    if global_batch_size % per_step:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by num_workers ({world_size}) x "
            f"train.gradient_accumulation_steps ({train.gradient_accumulation_steps})"
        )
    return global_batch_size // per_step


def deepspeed_config(train: TrainConfig, global_batch_size: int, world_size: int,
                     use_gpu: bool, dtype: str = "auto") -> dict[str, Any]:
    """bf16 on GPUs when the model's dtype is bf16 (`auto` there): DeepSpeed casts every weight to bf16, which
    must match the dtype the reference pass and the rollout engines load (`model.dtype`)."""
    micro = micro_batch_size(train, global_batch_size, world_size)
    zero: dict[str, Any] = {"stage": train.zero_stage}
    if train.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # export gathers the full weights
    if train.offload_optimizer and train.zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_gpu}
    if train.offload_params and train.zero_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": use_gpu}
    config: dict[str, Any] = {
        "train_batch_size": global_batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        # the model's dtype rule on a GPU; on CPU the trainer computes in float32 whatever the config says
        "bf16": {"enabled": bool(use_gpu) and resolve_dtype(dtype, cuda=True) == "bfloat16"},
        "fp16": {"enabled": False},
        "steps_per_print": 10**9,  # progress is ours (console + tracker), not DeepSpeed's
        "wall_clock_breakdown": False,
    }
    return config
