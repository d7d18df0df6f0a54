"""Metrics to the console (with progress), to a per-step JSONL history and to TensorBoard.

`RunLogger` is a Ray Train `UserCallback`: it runs in the Ray Train controller (on the head node) and sees every
`ray.train.report`. Workers report every `train.log_every_steps` steps with the per-step entries since the last
report, so nothing is lost between reports. Files under `out_dir`:
    metrics.jsonl   one line per optimizer step (loss, TRL-named DPO metrics, lr, consumed_samples, ...)
    samples.jsonl   one line per step with the ids of the examples it consumed (audits resume)
    tensorboard/    event files (`tensorboard --logdir <out_dir>/tensorboard`) when train.tracker is tensorboard
After a worker failure the run resumes from its latest checkpoint and re-reports the steps after it: the logger
drops its lines for those steps first, so each step appears once, as finally trained.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ray.train import UserCallback

log = logging.getLogger("reasoner_ray.train")

HISTORY_FILES = ("metrics.jsonl", "samples.jsonl")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


class RunLogger(UserCallback):
    def __init__(self, out_dir: str, recipe: str, total_steps: int, tracker: str):
        self.out_dir, self.recipe, self.total_steps, self.tracker = out_dir, recipe, total_steps, tracker
        self._writer = None
        self._last_step: int | None = None
        self._started = time.time()

    def _last_written_step(self) -> int:
        if self._last_step is None:
            rows = _read_jsonl(Path(self.out_dir) / "metrics.jsonl")
            self._last_step = max((r["step"] for r in rows), default=0)
        return self._last_step

    def _truncate_from(self, step: int) -> None:
        """Forget steps >= step (they are being trained again after a resume)."""
        for name in HISTORY_FILES:
            path = Path(self.out_dir) / name
            kept = [r for r in _read_jsonl(path) if r["step"] < step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        log.warning("[%s] resumed: steps from %d are trained again", self.recipe, step)
        self._last_step = step - 1

    def _tensorboard(self):
        if self._writer is None and self.tracker == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(self.out_dir) / "tensorboard" / self.recipe))
        return self._writer

    def write_step(self, entry: dict[str, Any]) -> None:
        step = entry["step"]
        if step <= self._last_written_step():
            self._truncate_from(step)
        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ids = entry.pop("sample_ids", [])
        with (out / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(entry) + "\n")
        with (out / "samples.jsonl").open("a") as fh:
            fh.write(json.dumps({"step": step, "ids": ids}) + "\n")
        self._last_step = step
        writer = self._tensorboard()
        if writer is not None:
            for key, value in entry.items():
                if isinstance(value, (int, float)) and key != "step":
                    writer.add_scalar(f"{self.recipe}/{key}", value, step)
            writer.flush()

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        report = metrics[0]  # rank 0's report; metric values are already averaged over ranks
        for entry in report.get("history", []):
            self.write_step(dict(entry))
        if report.get("history"):
            self._print_progress(report["history"][-1])
        if checkpoint is not None:
            (Path(self.out_dir) / "latest_checkpoint.json").write_text(
                json.dumps({"path": checkpoint.path, "step": report.get("step")}))

    def _print_progress(self, entry: dict[str, Any]) -> None:
        step, total = entry["step"], self.total_steps
        shown = {k: v for k, v in entry.items() if k.startswith(("loss", "rewards/", "logps/", "lr"))}
        parts = " ".join(f"{k}={v:.4g}" for k, v in shown.items() if isinstance(v, (int, float)))
        msg = (f"[{self.recipe}] step {step}/{total} ({100 * step / max(total, 1):.0f}%) {parts} "
               f"{entry.get('samples_per_s', 0):.2f} samples/s")
        print(msg, flush=True)
