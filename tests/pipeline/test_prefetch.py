"""Adopting replies an earlier pass generated for a stage: a kill half-way through the adoption must not leave a
record that a restart trusts (it would adopt what is left and record the stage complete with rows missing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoner_ray.core.config import build_config
from reasoner_ray.pipeline import prefetch as gen
from reasoner_ray.pipeline.runner import StageIO
from reasoner_ray.operators.generation import GenerationPlan


def _parquet(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"question_id": [f"q{i}" for i in range(rows)]}), path)


def _setup(tmp_path):
    config = build_config({"data": {"train": {"format": "arithmetic", "limit": 3}}})
    source, plan = config.data.train, GenerationPlan.rollouts([1.0], 2, 16, 1.0, 0, 1)
    io = StageIO("r1/rollouts", tmp_path / "output", tmp_path / "work", None)
    prefetch = gen.Prefetch(io.name, io.work, "model-folder", source, plan)
    for i in range(3):
        _parquet(prefetch.task().out / f"part-{i}.parquet", 2)
    prefetch.record("r0/eval", questions=3)
    return config, source, plan, io


def test_adopted_when_the_record_matches(tmp_path):
    config, source, plan, io = _setup(tmp_path)
    questions, replies, extra = gen.generate_or_adopt(config, io, "model-folder", source, plan, io.output)
    assert (questions, replies, extra) == (3, 6, {"generated_in": "r0/eval"})


def test_a_kill_while_adopting_generates_anew(tmp_path, monkeypatch):
    config, source, plan, io = _setup(tmp_path)
    real_rename, moved = Path.rename, []

    def killed_after_one(self, target):
        if moved:
            raise KeyboardInterrupt  # SIGKILL while the files move
        moved.append(self)
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        gen.generate_or_adopt(config, io, "model-folder", source, plan, io.output)
    monkeypatch.setattr(Path, "rename", real_rename)
    shutil.rmtree(io.output)  # the restarted stage begins with its output cleared

    calls = []

    def generate(config, backend, tasks):
        calls.append(backend.path)
        (task,) = tasks.values()
        _parquet(task.out / "fresh.parquet", 6)
        return {name: 3 for name in tasks}

    monkeypatch.setattr(gen, "generate", generate)
    questions, replies, extra = gen.generate_or_adopt(config, io, "model-folder", source, plan, io.output)
    assert calls == ["model-folder"] and (questions, replies, extra) == (3, 6, {})


def test_a_record_whose_replies_are_not_all_there_is_not_adopted(tmp_path, monkeypatch):
    config, source, plan, io = _setup(tmp_path)
    (io.work / "prefetched" / "generated" / "part-2.parquet").unlink()
    monkeypatch.setattr(gen, "generate", lambda config, backend, tasks: (
        _parquet(next(iter(tasks.values())).out / "fresh.parquet", 6), {n: 3 for n in tasks})[1])
    questions, replies, extra = gen.generate_or_adopt(config, io, "model-folder", source, plan, io.output)
    assert (replies, extra) == (6, {}) and [f.name for f in io.output.iterdir()] == ["fresh.parquet"]
