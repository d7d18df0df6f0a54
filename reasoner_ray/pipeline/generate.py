"""Generation, one implementation: questions -> replies from a model folder (vLLM actors) or an OpenAI-compatible
endpoint, written as Parquet. Every stage that generates (evaluation, rollouts, the diagnosis, the verifier's
chains) and jobs/evaluate.py go through `generate`, which also runs several tasks in one pass of one set of
engines (one engine start for all).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reasoner_ray.core.config import Config, DataSource, EndpointConfig

if TYPE_CHECKING:
    from reasoner_ray.operators.generation import GenerationPlan


def engine_settings(config: Config, model_path: str):
    from reasoner_ray.engines.vllm_generator import EngineSettings

    r = config.rollout
    return EngineSettings(model_path=model_path, max_model_len=r.max_model_len, kv_cache_gib=r.kv_cache_gib,
                          gpu_memory_utilization=r.gpu_memory_utilization, tensor_parallel_size=r.tensor_parallel_size,
                          enforce_eager=r.enforce_eager, seed=config.run.seed, dtype=config.model.dtype,
                          cpu_cores=r.cpu_cores_per_engine or 0)


@dataclass(frozen=True)
class ModelBackend:
    """A model folder, generated with vLLM actors (the config's `rollout` engine settings)."""

    path: str

    def generate(self, config: Config, questions, plans: dict):
        from reasoner_ray.operators.generation import generate_dataset

        gpus = float(config.rollout.tensor_parallel_size) if config.train.use_gpu else 0.0
        return generate_dataset(questions, engine_settings(config, self.path), plans, config.rollout.num_engines,
                                config.rollout.batch_size, gpus_per_engine=gpus)

    @property
    def name(self) -> str:
        return self.path

    def identity(self) -> dict:
        """What produced the replies: the folder and a hash of its content (a re-exported round differs)."""
        from reasoner_ray.models.loading import model_fingerprint

        return {"model": str(Path(self.path).absolute()), "fingerprint": model_fingerprint(self.path)}


@dataclass(frozen=True)
class EndpointBackend:
    """An OpenAI-compatible endpoint, called by `actors` Ray actors through the durable response cache."""

    endpoint: EndpointConfig
    cache_dir: str
    actors: int = 1
    batch_size: int = 16

    def generate(self, config: Config, questions, plans: dict):
        import math

        import ray

        from reasoner_ray.distill.client import endpoint_settings
        from reasoner_ray.operators.endpoint_generation import EndpointGenerationActor

        if len(plans) != 1:
            raise ValueError(f"an endpoint backend generates one plan per pass, got {len(plans)}: {', '.join(plans)}")
        (plan,) = plans.values()
        settings = endpoint_settings(self.endpoint, {}, self.actors)
        calls_per_actor = math.ceil(2 * settings.concurrency / self.batch_size) + 2  # keep the request slots busy
        pool = ray.data.ActorPoolStrategy(size=self.actors, max_tasks_in_flight_per_actor=calls_per_actor,
                                          max_concurrent_calls_per_actor=calls_per_actor,
                                          enable_true_multi_threading=True)
        return questions.map_batches(
            EndpointGenerationActor, fn_constructor_kwargs={"settings": settings, "cache_dir": self.cache_dir, "plan": plan},
            batch_size=self.batch_size, batch_format="numpy", compute=pool, num_cpus=0.25)

    @property
    def name(self) -> str:
        return f"{self.endpoint.model} at {self.endpoint.base_url}"

    def identity(self) -> dict:
        """What produced the replies: the endpoint, the served model's name and the revision the user gave."""
        e = self.endpoint
        return {"endpoint": e.base_url, "model": e.model, "revision": e.revision}


def questions_of(source: DataSource):
    from reasoner_ray.data.ray_source import good_rows, read_dataset

    return good_rows(read_dataset(source)).select_columns(["id", "row"]).materialize()


def read_table(folder: Path, columns: list[str] | None = None):
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").to_table(columns=columns)


def write_parquet(ds, out: Path, partition_cols: list[str] | None = None) -> None:
    # Writing takes no CPU slot: with one engine per core the engines hold every CPU of the node, and a write
    # task waiting for one would stall the stage.
    with warnings.catch_warnings():  # Ray 2.60's write_parquet has no named CPU parameter to use instead yet
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds.write_parquet(str(out), partition_cols=partition_cols, ray_remote_args={"num_cpus": 0})


@dataclass(frozen=True)
class GenerationTask:
    """Replies to every good question of `source` under the plan, written as Parquet to `out`."""

    source: DataSource
    plan: GenerationPlan
    out: Path


def generate(config: Config, backend, tasks: dict[str, GenerationTask]) -> dict[str, int]:
    """Every task in one pass of the backend's engines (one engine start for all); returns questions per task.
    Several tasks are written partitioned by task next to the first task's folder, then moved into each one's."""
    import shutil

    import pyarrow as pa

    from reasoner_ray.operators.generation import TASK_COLUMN

    questions = {name: questions_of(task.source) for name, task in tasks.items()}
    plans = {name: task.plan for name, task in tasks.items()}
    if len(tasks) == 1:
        ((name, task),) = tasks.items()
        write_parquet(backend.generate(config, questions[name], plans), task.out)
        return {name: questions[name].count()}
    tagged = [ds.add_column(TASK_COLUMN, lambda t, name=name: pa.array([name] * t.num_rows), batch_format="pyarrow")
              for name, ds in questions.items()]
    staging = next(iter(tasks.values())).out.with_name("tasks")
    shutil.rmtree(staging, ignore_errors=True)
    generated = backend.generate(config, tagged[0].union(*tagged[1:]).materialize(), plans)
    write_parquet(generated, staging, partition_cols=[TASK_COLUMN])
    for name, task in tasks.items():
        shutil.rmtree(task.out, ignore_errors=True)
        task.out.mkdir(parents=True)
        for f in sorted((staging / f"{TASK_COLUMN}={name}").glob("*.parquet")):
            f.rename(task.out / f.name)
    shutil.rmtree(staging)
    return {name: ds.count() for name, ds in questions.items()}


def parquet_rows(folder: Path) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").count_rows() if any(folder.glob("*.parquet")) else 0
