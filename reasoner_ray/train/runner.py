"""Driver side of a training run: start Ray Train's TorchTrainer and turn its result into a `TrainResult`.

Ray Train stores checkpoints under `<out_dir>/ray/<recipe>`; the same out_dir run again restores that run and
resumes from its latest checkpoint. Metrics go through `tracking.RunLogger` (metrics.jsonl,
TensorBoard). The exported model lands in `<out_dir>/model`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from reasoner_ray.core.config import Config
from reasoner_ray.paths import project_dirs
from reasoner_ray.storage import write_atomic
from reasoner_ray.train.loop import TrainResult, train_func

log = logging.getLogger(__name__)


def fit_global_batch(config: Config, recipe: str, n_examples: int) -> tuple[Config, int]:
    """(config, global batch): a recipe with fewer examples (x epochs) than one global batch trains one step on
    what there is instead of failing (a strong policy in a small round leaves few pairs): cut to a multiple of
    workers x accumulation, or, with fewer examples than that, repeated up to one step of that size (a mean loss
    over [p, p] is the loss of p, so one pair on two workers trains as one pair)."""
    from reasoner_ray.train.steps import recipe_settings

    settings = recipe_settings(config, recipe)
    gbs, passes = settings["global_batch_size"], int(n_examples * settings["epochs"])
    if passes >= gbs or n_examples == 0:
        return config, gbs
    unit = config.train.num_workers * config.train.gradient_accumulation_steps
    update: dict[str, Any] = {"global_batch_size": passes // unit * unit}
    if update["global_batch_size"] == 0:
        update = {"global_batch_size": unit, "epochs": math.ceil(unit / n_examples)}
    log.warning("[%s] %d examples x %s epochs is less than one global batch of %d: training one step of %d instead%s",
                recipe, n_examples, settings["epochs"], gbs, update["global_batch_size"],
                " (examples repeated to give each of the workers x accumulation one)" if "epochs" in update else "")
    section = getattr(config, recipe).model_copy(update=update)
    return config.model_copy(update={recipe: section}), update["global_batch_size"]


def run_training(config: Config, recipe: str, model_path: str, examples: list[dict[str, Any]], out_dir: str,
                 counts: Counter) -> TrainResult:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from reasoner_ray.ray_utils import init_ray
    from reasoner_ray.train.schedule import sample_order
    from reasoner_ray.train.steps import recipe_settings
    from reasoner_ray.train.tracking import ProgressLines, RunLogger

    out = Path(out_dir).resolve()
    if Path(model_path).exists():  # workers run in another working directory
        model_path = str(Path(model_path).resolve())
    out.mkdir(parents=True, exist_ok=True)
    if recipe == "sft" and config.sft.steps is not None and examples:
        # A fixed number of steps: the epochs that give exactly that many (the half example guards the rounding)
        epochs = (config.sft.steps * config.sft.global_batch_size + 0.5) / len(examples)
        config = config.model_copy(update={"sft": config.sft.model_copy(update={"epochs": epochs})})
    config, gbs = fit_global_batch(config, recipe, len(examples))
    settings = recipe_settings(config, recipe)
    order = sample_order(len(examples), settings["epochs"], gbs, config.run.seed)
    total_steps = len(order) // gbs
    # The last partial global batch is not trained (every step has the same size); counted, not hidden.
    counts = Counter(counts, examples_used=len(examples),
                     example_passes_not_trained=int(len(examples) * settings["epochs"]) - len(order))
    log.info("[%s] %d examples, %d steps of %d, %d workers, ZeRO-%d; counts %s", recipe, len(examples), total_steps,
             gbs, config.train.num_workers, config.train.zero_stage, dict(counts))
    extensions = os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(project_dirs()["cache"], "torch_extensions"))
    init_ray()
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"config": config.model_dump(mode="json"), "recipe": recipe, "examples": examples,
                           "order": order, "model_path": model_path, "out_dir": str(out),
                           "torch_extensions_dir": extensions},
        scaling_config=ScalingConfig(num_workers=config.train.num_workers, use_gpu=config.train.use_gpu),
        torch_config=TorchConfig(backend="nccl" if config.train.use_gpu else "gloo"),
        run_config=RunConfig(
            name=recipe,
            storage_path=str(out / "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=config.train.keep_checkpoints),
            failure_config=FailureConfig(max_failures=config.train.max_failures),
            callbacks=[RunLogger(str(out), recipe, total_steps, config.train.tracker)],
        ),
    )
    with ProgressLines(str(out), recipe, total_steps):
        result = trainer.fit()
    if result.error is not None:
        raise result.error
    model_dir = out / "model"
    with result.checkpoint.as_directory() as d:
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(Path(d, "hf"), model_dir)
    history = out / "metrics.jsonl"
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()] if history.is_file() else []
    write_atomic(out / "counts.json", json.dumps(dict(counts), indent=2))
    return TrainResult(model_dir=str(model_dir), steps=total_steps, metrics=rows[-1] if rows else {},
                       history_path=str(history), counts=dict(counts))
