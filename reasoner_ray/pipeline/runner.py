"""Run stages idempotently under the run directory's manifest.

A stage is a function `fn(ctx: StageIO) -> StageCounts`. `StageRunner.run(name, fn)` skips it when the
manifest says it completed; otherwise it clears the stage's partial output (keeping work/: caches and
checkpoints), runs it, pushes the folder (URI run dirs) and only then records it, with the config values it
depended on. A job killed at any moment and started again therefore redoes at most the unfinished stage,
resuming that stage's own work; a stage that raises is not recorded, so the same command runs it again.

`redo(stage)` forgets a completed stage and every stage after it and clears their folders (work/ too: a
finished training's checkpoints would otherwise make the redo a no-op), and the folder of a stage that started
but never completed (it came after the last completed one, so after `stage`: its checkpoints were trained on
what the redo replaces); run-level caches (the teacher's responses under <run dir>/cache) are kept. A config
that changed since stages completed is reported per stage; an unfinished stage whose config inputs changed since
it started has its work/ cleared before it runs again (a half-trained model on other settings is not resumed).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoner_ray.core.config import Config
from reasoner_ray.core.errors import PreflightError, StageFailed
from reasoner_ray.core.rundir import StageRecord, stage_dir
from reasoner_ray.core.stage_inputs import changed_inputs, stage_inputs
from reasoner_ray.storage import RunDir, write_atomic

log = logging.getLogger(__name__)

_ATTEMPT_INPUTS = "attempt_inputs.json"  # in an unfinished stage's work/: the config inputs it started with


@dataclass
class StageIO:
    name: str
    output: Path
    work: Path
    run: RunDir


@dataclass
class StageCounts:
    inputs: int
    outputs: int
    extra: dict[str, Any] = field(default_factory=dict)


StageFn = Callable[[StageIO], StageCounts]

MODEL_DIR = "model"  # every model a stage produces is at <stage output>/model


def place_model(export: str | Path, io: StageIO) -> Path:
    """Put a model at the stage's canonical folder: a trainer's export (in work/) is moved, not copied (an 8B
    export is 16 GB); a model from elsewhere (a carried-over policy) is copied."""
    target = io.output / MODEL_DIR
    export = Path(export).resolve()
    shutil.rmtree(target, ignore_errors=True)
    if export.is_relative_to(io.work.resolve()):
        shutil.move(export, target)
    else:
        shutil.copytree(export, target)
    return target


def _describe(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes)


class StageRunner:
    def __init__(self, config: Config, redo: str | None = None):
        self.config = config
        self.tree = config.model_dump(mode="json")
        self.run_dir = RunDir(config.run.dir)
        self.manifest = self.run_dir.load_manifest()
        if redo:
            self.redo(redo)
        self.run_dir.write_json("config.json", self.tree)
        self.stale = self._stale_stages()

    def _stale_stages(self) -> list[str]:
        """Completed stages whose config inputs changed since; logged with the keys and the --redo that redoes them."""
        stale = []
        for name, rec in self.manifest.stages.items():
            changes = changed_inputs(rec.config, stage_inputs(self.tree, name))
            if changes:
                stale.append(name)
                log.warning("stage %s completed with other settings (%s); it is kept as it is", name, _describe(changes))
        if stale:
            log.warning("to redo it and every stage after it: the same command with --redo %s", stale[0])
        return stale

    def redo(self, stage: str) -> list[str]:
        try:
            stage_dir(stage)
        except ValueError:
            raise PreflightError(f"--redo {stage}: not a stage name; completed stages of {self.config.run.dir}: "
                                 f"{', '.join(self.manifest.stages) or 'none'}") from None
        dropped = self.manifest.forget_from(stage)
        if not dropped:
            log.warning("--redo %s: that stage has not completed in %s; nothing to redo", stage, self.config.run.dir)
            return []
        self.run_dir.save_manifest(self.manifest)  # first: a kill below must not leave half-cleared stages recorded
        unfinished = [name for name in self.run_dir.stages_on_disk() if not self.manifest.done(name) and name not in dropped]
        for name in dropped + unfinished:
            self.run_dir.reset(name)
        dropped += unfinished
        log.info("redoing %s (cleared, with their work folders; caches under %s/cache are kept)",
                 ", ".join(dropped), self.config.run.dir)
        return dropped

    def run(self, name: str, fn: StageFn) -> StageRecord:
        if self.manifest.done(name):
            rec = self.manifest.stages[name]
            self.run_dir.ensure_local(name)
            log.info("stage %-14s done earlier (in %d, out %d), skipped", name, rec.inputs, rec.outputs)
            return rec
        log.info("stage %-14s starting", name)
        self._forget_other_attempt(name)
        self.run_dir.begin(name)
        write_atomic(self.run_dir.work(name) / _ATTEMPT_INPUTS, json.dumps(stage_inputs(self.tree, name), indent=2))
        started = time.time()
        try:
            counts = fn(StageIO(name, self.run_dir.output(name), self.run_dir.work(name), self.run_dir))
        except Exception as err:
            raise StageFailed(name, err) from err
        seconds = time.time() - started
        self.run_dir.commit(name)
        rec = self.manifest.record(name, counts.inputs, counts.outputs, seconds, config=stage_inputs(self.tree, name),
                                   **counts.extra)
        self.run_dir.save_manifest(self.manifest)
        log.info("stage %-14s done in %.1f s (in %d, out %d)", name, seconds, counts.inputs, counts.outputs)
        return rec

    def _forget_other_attempt(self, name: str) -> None:
        """An earlier attempt of this stage on other config inputs: its work/ (checkpoints) is not resumed."""
        record = self.run_dir.work(name) / _ATTEMPT_INPUTS
        if not record.is_file():
            return
        earlier = json.loads(record.read_text())
        current = stage_inputs(self.tree, name)
        changes = changed_inputs(earlier, current)
        if changes:
            log.warning("stage %s: an unfinished attempt ran with other settings (%s); starting it afresh", name,
                        _describe(changes))
            self.run_dir.reset(name)

    def output(self, name: str) -> Path:
        return self.run_dir.output(name)
