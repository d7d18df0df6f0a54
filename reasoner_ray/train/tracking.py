"""Metrics to a per-step JSONL history and to TensorBoard, and progress lines to the job's console.

`RunLogger` is a Ray Train `UserCallback`: it runs in the Ray Train controller (on the head node) and sees every
`ray.train.report`. Workers report every `train.log_every_steps` steps with the per-step entries since the last
report, so nothing is lost between reports. Files under `out_dir`:
    metrics.jsonl   one line per optimizer step (loss, TRL-named DPO metrics, lr, consumed_samples, ...)
    samples.jsonl   one line per step with the ids of the examples it consumed (audits resume)
    tensorboard/    event files (`tensorboard --logdir <out_dir>/tensorboard`) when train.tracker is tensorboard
After a worker failure the run resumes from its latest checkpoint and re-reports the steps after it: the logger
drops its lines for those steps first, so each step appears once, as finally trained.

`ProgressLines` runs in the driver beside `trainer.fit()` and reads metrics.jsonl as it grows: a line at the first
step, at every tenth of the run and at the last, and one when a resumed run goes back to its checkpoint (the
controller's and workers' own output stays in Ray's logs).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ray.train import UserCallback

from reasoner_ray.storage import write_atomic

log = logging.getLogger("reasoner_ray.train")

PROGRESS_LINES = 10  # a long training stage says where it is this many times (plus its first and last step)

HISTORY_FILES = ("metrics.jsonl", "samples.jsonl")
RESUMES = "resumes.jsonl"  # one line per resumed worker group: the checkpoint's step (written by rank 0)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The file's rows; a line that does not parse (one being appended as it is read) is left out."""
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


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
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
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
        if checkpoint is not None:
            write_atomic(Path(self.out_dir) / "latest_checkpoint.json",
                         json.dumps({"path": checkpoint.path, "step": report.get("step")}))


def progress_line(recipe: str, entry: dict[str, Any], total: int) -> str:
    step = entry["step"]
    shown = {k: v for k, v in entry.items() if k.startswith(("loss", "rewards/", "logps/", "lr"))}
    parts = " ".join(f"{k}={v:.4g}" for k, v in shown.items() if isinstance(v, (int, float)))
    return (f"[{recipe}] step {step}/{total} ({100 * step / max(total, 1):.0f}%) {parts} "
            f"{entry.get('samples_per_s', 0):.2f} samples/s")


class ProgressLines(threading.Thread):
    """Console progress of a training run, from its metrics.jsonl (see the module docstring). `with` it around
    `trainer.fit()`."""

    def __init__(self, out_dir: str, recipe: str, total_steps: int, poll_s: float = 1.0):
        super().__init__(name=f"{recipe}-progress", daemon=True)
        self.path, self.recipe, self.total, self.poll_s = Path(out_dir) / "metrics.jsonl", recipe, total_steps, poll_s
        self.every = max(1, total_steps // PROGRESS_LINES)
        self.shown = max((r["step"] for r in _read_jsonl(self.path)), default=0)  # a rerun shows only new steps
        self.resumes_path = self.path.with_name(RESUMES)
        self.resumes = len(_read_jsonl(self.resumes_path))
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.poll_s):
            self.poll()
        self.poll()

    def poll(self) -> None:
        resumes = _read_jsonl(self.resumes_path)
        for resume in resumes[self.resumes:]:  # a new worker group went on from a checkpoint
            log.warning("[%s] resuming from the checkpoint at step %d", self.recipe, resume["step"])
            self.shown = min(self.shown, resume["step"])
        self.resumes = len(resumes)
        rows = _read_jsonl(self.path)
        if not rows:
            return
        for row in rows:
            step = row["step"]
            if step > self.shown and (step == 1 or step % self.every == 0 or step == self.total):
                log.info(progress_line(self.recipe, row, self.total))
                self.shown = step

    def __enter__(self) -> "ProgressLines":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join(timeout=10)
