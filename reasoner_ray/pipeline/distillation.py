"""Distillation (the paper's first step, arXiv 2410.16198): short-answer rows -> teacher rationales -> verified
CoT + direct SFT data.

    from reasoner_ray.pipeline.distillation import run_distillation
    result = run_distillation(config, out_dir)   # Ray is started if it is not running yet

Data flow: `reasoner_ray.data.ray_source.read_dataset(config.data.train)` (rows checked in Ray tasks and kept
in the object store, images by reference) -> the teacher's calls (`operators.teacher_calls.TeacherCalls` on an actor pool), streamed
-> the driver, which writes each record as it arrives (`distill.output.OutputWriter`) and prints progress. The driver
holds no rows, so its memory stays flat as rows grow.
When `teacher.start_local` is set and `teacher.base_url` is a loopback address nobody answers on, the project's
stand-in teacher is started there for the run's duration. Before any row is streamed, one row's own request
checks the teacher (`distill/preflight.py`). `check_outcome` then says whether the result is usable (the pipeline's distill
stage and jobs/distill.py fail when it is not). The API key is read from the environment variable
named by `teacher.api_key_env` (a dummy key when unset, for local servers); it is never logged or written.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from reasoner_ray.core.config import Config
from reasoner_ray.core.errors import JobError
from reasoner_ray.distill.cache import ResponseCache
from reasoner_ray.distill.client import (
    TRANSPORT_REASONS,
    CallSettings,
    endpoint_settings,
)
from reasoner_ray.distill.output import OutputWriter, Tally
from reasoner_ray.distill.preflight import check_teacher

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class DistillResult:
    input_rows: int
    verified: int
    rejected_by_reason: dict[str, int]
    out_dir: str
    paths: dict[str, str] = field(default_factory=dict)  # relative name -> absolute path (see output.py)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def transport_failures(self) -> dict[str, int]:
        """Rows that got no usable answer for transport reasons (not cached: a rerun sends them again)."""
        return {r: n for r, n in sorted(self.rejected_by_reason.items()) if r in TRANSPORT_REASONS}

    def sft_paths(self, style: str) -> list[str]:
        return sorted(p for name, p in self.paths.items() if name.startswith("sft/") and name.endswith(f"/{style}.none.jsonl"))


def call_settings(config: Config) -> CallSettings:
    t = config.teacher
    sampling = {"temperature": t.temperature, "max_tokens": t.max_tokens}
    if t.seed is not None:
        sampling["seed"] = t.seed
    return endpoint_settings(t, sampling, config.distill.num_actors)


def cache_dir(config: Config) -> str:
    return config.distill.cache_dir or os.path.join(config.run.dir, "cache", "teacher")


def _maybe_start_local_teacher(config: Config, stack: ExitStack) -> None:
    from reasoner_ray.teacher.launch import LocalTeacher, answers, spec_for_source

    url = urlparse(config.teacher.base_url)
    if not config.teacher.start_local or url.hostname not in LOOPBACK_HOSTS or answers(config.teacher.base_url):
        return
    log.info("starting the stand-in teacher on %s (teacher.start_local)", config.teacher.base_url)
    stack.enter_context(LocalTeacher(spec_for_source(config.data.train), port=url.port or 80, model_name=config.teacher.model))


def _teacher_records(config: Config, settings: CallSettings, run_token: str):
    import ray

    from reasoner_ray.data.ray_source import read_dataset
    from reasoner_ray.operators.teacher_calls import TeacherCalls

    d = config.distill
    # Enough batches in flight per actor that the semaphore, not the batching, is what limits: while one batch
    # waits for its slowest row, the others keep the request slots busy.
    calls_per_actor = math.ceil(2 * settings.concurrency / d.batch_size) + 2
    pool = ray.data.ActorPoolStrategy(size=d.num_actors, max_tasks_in_flight_per_actor=calls_per_actor,
                                      max_concurrent_calls_per_actor=calls_per_actor, enable_true_multi_threading=True)
    return read_dataset(config.data.train).map_batches(
        TeacherCalls, fn_constructor_kwargs={"settings": settings, "cache_dir": cache_dir(config),
                                             "include_answer": config.teacher.include_answer, "run_token": run_token},
        batch_size=d.batch_size, batch_format="pyarrow", compute=pool, num_cpus=d.actor_num_cpus,
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def check_outcome(result: DistillResult, max_failed_fraction: float) -> None:
    """Raise JobError when the result is not usable: too many rows without a teacher answer, or no verified row."""
    failed = result.transport_failures
    n_failed = sum(failed.values())
    if n_failed > max_failed_fraction * result.input_rows:
        raise JobError(
            f"{n_failed} of {result.input_rows} rows got no answer from the teacher ({_counts(failed)}), more than "
            f"distill.max_failed_fraction={max_failed_fraction:g} allows. The other rows' answers are cached: fix the "
            f"teacher (or wait for it), then run the same command again; only those {n_failed} rows are sent again")
    if result.verified == 0:
        if result.input_rows == 0:
            raise JobError("no verified rows, so there is nothing to train on: data.train gave no rows")
        why = f"all {result.input_rows} rows were rejected ({_counts(result.rejected_by_reason)}; see {result.out_dir}/rejected.jsonl)"
        if {"wrong_answer", "unparsed"} & set(result.rejected_by_reason):
            why += ("; the teacher's final answers disagreed with the annotations or had no `### Answer:` line: check "
                    "teacher.model, teacher.max_tokens (a cut-off answer is unparsed) and the data's answers")
        raise JobError(f"no verified rows, so there is nothing to train on: {why}")


def _progress_line(tally: Tally) -> str:
    return (f"distill: {tally.input_rows} rows ({tally.rate():.1f} rows/s) verified {tally.verified} "
            f"rejected {sum(tally.rejected.values())} cached {tally.cached} retries {tally.retries} "
            f"errors {tally.failed_calls}")


def run_distillation(config: Config, out_dir: str) -> DistillResult:
    from ray.data import DataContext

    from reasoner_ray.core.data_regime import rationale_pool
    from reasoner_ray.ray_utils import init_ray

    # The teacher is asked about the rationale pool only (all of data.train unless data.rationale_fraction < 1).
    data = config.data.model_copy(update={"train": rationale_pool(config), "rationale_fraction": 1.0})
    config = config.model_copy(update={"data": data})
    init_ray()
    swept = ResponseCache(cache_dir(config)).sweep_partial()
    if swept:
        log.info("removed %d partial cache files left by a killed run", swept)
    settings = call_settings(config)
    ctx = DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    # Ordered output: a resumed run writes the same files, byte for byte, as an uninterrupted one.
    ctx.execution_options.preserve_order, ctx.enable_progress_bars = True, config.distill.ray_progress_bars
    tally, writer = Tally(), OutputWriter(out_dir)
    try:
        with ExitStack() as stack:
            _maybe_start_local_teacher(config, stack)
            run_token = uuid.uuid4().hex
            check_teacher(config, settings, cache_dir(config), run_token)
            last = time.monotonic()
            for batch in _teacher_records(config, settings, run_token).iter_batches(batch_size=None, batch_format="pyarrow"):
                for rec in batch.to_pylist():
                    tally.add(rec)
                    writer.write(rec)
                if time.monotonic() - last >= config.distill.progress_every_s:
                    log.info(_progress_line(tally))
                    last = time.monotonic()
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
    log.info(_progress_line(tally))
    summary = tally.summary(config.teacher.prices, config.teacher.model)
    paths = writer.finish(summary)
    log.info("distill done: %d verified, %d rejected %s; cost estimate %s USD; outputs in %s", tally.verified,
             sum(tally.rejected.values()), dict(tally.rejected), summary["estimated_cost_usd"], out_dir)
    return DistillResult(tally.input_rows, tally.verified, dict(tally.rejected), str(out_dir), paths, summary)
