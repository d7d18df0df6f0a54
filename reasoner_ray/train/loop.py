"""The Ray Train run shared by SFT and DPO: `train_func` on every worker, `run_training` on the driver.

Worker: DeepSpeed over the process group Ray Train set up (gloo on CPU, nccl on GPU), a fused torch AdamW handed to
`deepspeed.initialize`, the recipe's loss from `steps.RECIPES`. Every `train.checkpoint_every_steps` steps (and
at the end) each rank saves its DeepSpeed shard and calls `ray.train.report(..., checkpoint=...)`; Ray merges
the shards into one checkpoint. `state.json` in it records the consumed samples, and a restarted worker group
(after a kill) resumes from `ray.train.get_checkpoint()` at exactly that offset of the fixed sample order
(`schedule.py`). Rerunning the same command on the same out_dir resumes too (Ray Train restores the run).
The final checkpoint also holds the Hugging Face export (`hf/`), which the driver copies to `<out_dir>/model`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_dir: str  # the exported HF folder (weights + processor)
    steps: int
    metrics: dict[str, Any]  # the last step's metrics
    history_path: str  # per-step metrics JSONL
    counts: dict[str, int] = field(default_factory=dict)  # examples kept / filtered and why


def _reduce_mean(values: dict[str, float]) -> dict[str, float]:
    from reasoner_ray.train.collectives import all_reduce_sum, world_size

    keys = sorted(values)
    sums = all_reduce_sum([values[k] for k in keys])
    return {k: v / world_size() for k, v in zip(keys, sums)}


def _save_checkpoint(engine, state: dict[str, Any], rank: int, history: list, processor=None, export=None):
    import ray.train

    tmp = tempfile.mkdtemp(prefix="ckpt-", dir=os.environ.get("REASONER_TRAIN_TMP"))
    try:
        engine.save_checkpoint(os.path.join(tmp, "deepspeed"), tag="state")
        if export is not None:
            export(os.path.join(tmp, "hf"))
        if rank == 0:
            Path(tmp, "state.json").write_text(json.dumps(state))
        ray.train.report({"step": state["step"], "history": history},
                         checkpoint=ray.train.Checkpoint.from_directory(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_func(loop_config: dict[str, Any]) -> None:
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", loop_config["torch_extensions_dir"])
    # Ray logs every report's full metrics (our per-step history) at INFO, on a logger named after its file;
    # progress lines come from tracking.py instead.
    from ray.train.v2._internal.execution import context as train_context

    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    import deepspeed
    import ray.train
    import torch

    from reasoner_ray.core.config import Config
    from reasoner_ray.train.deepspeed_config import deepspeed_config, micro_batch_size
    from reasoner_ray.train.export import export_hf
    from reasoner_ray.train.model_setup import make_optimizer, make_scheduler, prepare_model
    from reasoner_ray.train.schedule import micro_slice
    from reasoner_ray.train.steps import RECIPES, recipe_settings, token_share
    from reasoner_ray.train.tracking import RESUMES

    config = Config.model_validate(loop_config["config"])
    recipe, examples, order = loop_config["recipe"], loop_config["examples"], loop_config["order"]
    settings = recipe_settings(config, recipe)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    Path(loop_config["out_dir"], "workers").mkdir(parents=True, exist_ok=True)
    Path(loop_config["out_dir"], "workers", f"rank{rank}.pid").write_text(str(os.getpid()))
    torch.manual_seed(config.run.seed)
    deepspeed.init_distributed(dist_backend="nccl" if config.train.use_gpu else "gloo")

    model, processor = prepare_model(loop_config["model_path"], config.model.dtype, config.train,
                                     settings["freeze_vision"], settings["freeze_projector"])
    gbs, accumulation = settings["global_batch_size"], config.train.gradient_accumulation_steps
    micro = micro_batch_size(config.train, gbs, world)
    total_steps = len(order) // gbs
    optimizer = make_optimizer(model, settings["lr"], settings["vision_lr"], config.train.weight_decay)
    ds_config = deepspeed_config(config.train, gbs, world, config.train.use_gpu, config.model.dtype)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, config=ds_config,
        lr_scheduler=make_scheduler(optimizer, total_steps, config.train.warmup_ratio))

    start_step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            engine.load_checkpoint(os.path.join(d, "deepspeed"), tag="state")
            start_step = json.loads(Path(d, "state.json").read_text())["step"]
        if rank == 0:
            log.warning("[%s] resuming from the checkpoint at step %d of %d", recipe, start_step, total_steps)
            with Path(loop_config["out_dir"], RESUMES).open("a") as fh:  # for the driver's console (tracking.py)
                fh.write(json.dumps({"step": start_step}) + "\n")
    spec = RECIPES[recipe]
    encoder = spec.encoder(processor, config)
    history: list[dict[str, Any]] = []
    for step in range(start_step, total_steps):
        started = time.time()
        step_metrics: dict[str, float] = {}
        # All micro-batches of the step first: the loss is normalised by the whole step's targets (steps.py).
        batches = [spec.collate(encoder, [examples[i] for i in micro_slice(order, step, m, rank, world, micro, accumulation)],
                                config.train.max_length) for m in range(accumulation)]
        step_lr = scheduler.get_last_lr()[0]  # what this step trains at (DeepSpeed steps the schedule after it)
        share = token_share(sum(spec.targets(b) for b in batches), accumulation) if spec.targets else None
        for batch in batches:
            loss, metrics = spec.loss(engine, batch, encoder, config, token_share=share)
            engine.backward(loss)
            engine.step()
            for k, v in metrics.items():
                step_metrics[k] = step_metrics.get(k, 0.0) + v / accumulation
        entry = _reduce_mean(step_metrics)
        consumed = (step + 1) * gbs
        step_ids = [examples[i]["id"] for i in order[step * gbs:consumed]]
        entry.update(step=step + 1, consumed_samples=consumed, epoch=consumed / len(examples),
                     lr=step_lr,
                     samples_per_s=gbs / max(time.time() - started, 1e-9), sample_ids=step_ids)
        history.append(entry)
        done = step + 1 == total_steps
        state = {"step": step + 1, "consumed_samples": consumed, "total_steps": total_steps}
        if done or (step + 1) % config.train.checkpoint_every_steps == 0:
            export = (lambda d: export_hf(engine, processor, d, config.train.zero_stage, rank)) if done else None
            _save_checkpoint(engine, state, rank, history, export=export)
            history = []
        elif (step + 1) % config.train.log_every_steps == 0:
            ray.train.report({"step": step + 1, "history": history})
            history = []
    if start_step >= total_steps:  # resumed from the final checkpoint: only the export is redone
        state = {"step": total_steps, "consumed_samples": total_steps * gbs, "total_steps": total_steps}
        _save_checkpoint(engine, state, rank, [], export=lambda d: export_hf(engine, processor, d, config.train.zero_stage, rank))
