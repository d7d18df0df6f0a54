"""Run stages idempotently under the run directory's manifest.

A stage is a function `fn(ctx: StageIO) -> StageCounts`. `StageRunner.run(name, fn)` skips it when the
manifest says it completed; otherwise it clears the stage's partial output (keeping work/: caches and
checkpoints), runs it, pushes the folder (URI run dirs) and only then records it. A job killed at any moment
and started again therefore redoes at most the unfinished stage, resuming that stage's own work.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoner_ray.core.config import Config, dump_config
from reasoner_ray.core.rundir import StageRecord
from reasoner_ray.storage import RunDir

log = logging.getLogger(__name__)


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


def config_fingerprint(config: Config) -> str:
    return hashlib.sha256(dump_config(config).encode()).hexdigest()[:16]


class StageRunner:
    def __init__(self, config: Config):
        self.config = config
        self.run_dir = RunDir(config.run.dir)
        self.manifest = self.run_dir.load_manifest()
        fingerprint = config_fingerprint(config)
        if self.manifest.config_hash and self.manifest.config_hash != fingerprint:
            log.warning("run dir %s was started with a different config; completed stages are kept as they are",
                        config.run.dir)
        if not self.manifest.config_hash:
            self.manifest.config_hash = fingerprint
            self.run_dir.write_json("config.json", config.model_dump(mode="json"))
            self.run_dir.save_manifest(self.manifest)

    def run(self, name: str, fn: StageFn) -> StageRecord:
        if self.manifest.done(name):
            rec = self.manifest.stages[name]
            self.run_dir.ensure_local(name)
            log.info("stage %-14s done earlier (in %d, out %d), skipped", name, rec.inputs, rec.outputs)
            return rec
        log.info("stage %-14s starting", name)
        self.run_dir.begin(name)
        started = time.time()
        counts = fn(StageIO(name, self.run_dir.output(name), self.run_dir.work(name), self.run_dir))
        seconds = time.time() - started
        self.run_dir.commit(name)
        rec = self.manifest.record(name, counts.inputs, counts.outputs, seconds, **counts.extra)
        self.run_dir.save_manifest(self.manifest)
        log.info("stage %-14s done in %.1f s (in %d, out %d)", name, seconds, counts.inputs, counts.outputs)
        return rec

    def output(self, name: str) -> Path:
        return self.run_dir.output(name)
