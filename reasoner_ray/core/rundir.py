"""The run directory: one map from stage to folder, and the manifest of completed stages.

    <run dir>/
      manifest.json                 completed stages with input/output counts, seconds, extras and the config
                                    values each one depended on (core/stage_inputs.py)
      config.json                   the config of the latest invocation
      .lock                         held (flock) by the job running on this directory, if any
      logs/driver.log               the driver's log, with the traceback of any failure
      distill/                      teacher rationales (SFT rows), rejected rows, accounting
      sft/                          SFT checkpoints and export/
      rounds/r0/eval/               evaluation of the SFT model (round 0's policy)
      rounds/r0/diagnose/           the SFT model's sampled chains on data.validation: where they go wrong
      rounds/r1/rollouts/ ... /verify  round 1's rollouts, rewards, pairs, reference log-probs, DPO, eval, the
                                    separate verifier's training and the verifiers' comparison (eval.samples > 0)
      report/                       report.md and plots

A stage is named like `r1/dpo`; `stage_dir()` is the only place that maps names to folders. Each stage folder
holds `output/` (cleared and rewritten when an unfinished stage is re-run) and `work/` (kept across restarts:
caches, training checkpoints), so re-running a killed stage resumes its work but never duplicates output.
Pure: no I/O here (reasoner_ray.storage does the reading and writing).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

ROUND_STAGES = ("rollouts", "rewards", "pairs", "reference", "dpo", "eval", "diagnose", "verifier", "verify")
_FOLDERS = {"distill": "distill", "sft": "sft", "report": "report"}
# Stages an older version of the project named otherwise: old name -> (new name, old folder). A run directory
# written by it is moved to the new names when opened (storage.RunDir.migrate), so it resumes.
RENAMED = {"eval_sft": ("r0/eval", "eval/sft"), "diagnose_sft": ("r0/diagnose", "eval/sft-diagnosis")}


def round_stage(round_index: int, name: str) -> str:
    if name not in ROUND_STAGES:
        raise ValueError(f"unknown round stage {name!r}; expected one of {ROUND_STAGES}")
    return f"r{round_index}/{name}"


def stage_of_folder(folder: str) -> str | None:
    """The stage whose folder (relative to the run directory) this is, else None; the inverse of stage_dir."""
    for name, rel in _FOLDERS.items():
        if folder == rel:
            return name
    parts = folder.split("/")
    if len(parts) == 3 and parts[0] == "rounds" and parts[1][:1] == "r" and parts[1][1:].isdigit() and parts[2] in ROUND_STAGES:
        return f"{parts[1]}/{parts[2]}"
    return None


def round_of(stage: str) -> int | None:
    """`r2/dpo` -> 2; None for a stage outside the rounds (`distill`, `sft`, `report`)."""
    head, sep, _ = stage.partition("/")
    return int(head[1:]) if sep and head.startswith("r") and head[1:].isdigit() else None


def stage_dir(stage: str) -> str:
    """Folder of a stage, relative to the run directory."""
    if stage in _FOLDERS:
        return _FOLDERS[stage]
    head, _, name = stage.partition("/")
    if round_of(stage) is not None and name in ROUND_STAGES:
        return f"rounds/{head}/{name}"
    raise ValueError(f"unknown stage {stage!r}")


class StageRecord(BaseModel):
    inputs: int
    outputs: int
    seconds: float
    finished_at: float = Field(default_factory=time.time)
    extra: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)  # stage_inputs() when the stage completed


class Manifest(BaseModel):
    """Completed stages in completion order. Written after a stage's output is complete, never before."""

    stages: dict[str, StageRecord] = Field(default_factory=dict)

    def renamed(self) -> list[tuple[str, str, str]]:
        """(old name, new name, old folder) of each stage recorded under a name RENAMED retired."""
        return [(old, *RENAMED[old]) for old in self.stages if old in RENAMED]

    def rename(self, old: str, new: str) -> None:
        """The stage `old` recorded as `new`, where it sits in the order, and named so where other records name it
        (the stage whose pass generated a later stage's replies: `generated_in`)."""
        self.stages = {new if name == old else name: rec for name, rec in self.stages.items()}
        for rec in self.stages.values():
            if rec.extra.get("generated_in") == old:
                rec.extra["generated_in"] = new

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def record(self, stage: str, inputs: int, outputs: int, seconds: float, config: dict[str, Any] | None = None,
               **extra: Any) -> StageRecord:
        rec = StageRecord(inputs=inputs, outputs=outputs, seconds=seconds, extra=extra, config=config or {})
        self.stages[stage] = rec
        return rec

    def forget_from(self, stage: str) -> list[str]:
        """Drop `stage` and every stage completed after it (they were built on it); returns the dropped names."""
        names = list(self.stages)
        dropped = names[names.index(stage):] if stage in self.stages else []
        for name in dropped:
            del self.stages[name]
        return dropped
