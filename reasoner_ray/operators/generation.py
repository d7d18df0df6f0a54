"""vLLM generation as a Ray Data operator: rollouts (many samples per question) and evaluation (greedy).

Each Ray Data actor holds one `VLLMGenerator` (one engine per `tensor_parallel_size` GPUs, or on CPUs one per
slot of cores, reasoner_ray/engines/cpu_binding.py); rows stream through `map_batches` in batches of
questions. Rollouts sample `samples_per_temperature` chains at every temperature of the config with the CoT
instruction; evaluation decodes greedily once per style (CoT, direct).
Output rows: question id, style, sample index, temperature, text, finish reason, token counts, plus the gold
answer fields scoring needs; with `plan.logprobs` also the sampled token ids and their log-probs
(the DPO reference log-probs when the sampling model is the reference, reasoner_ray/train/reference.py).
One pass may serve several plans on one set of engines (a round's evaluation, its verifier's chains and the next
round's rollouts all sample the same model): each question row then names its plan in a `task` column, which the
output rows keep.
A killed actor is restarted by Ray Data and its batch retried, so the stage still completes; the engine is
shut down in `__del__`, which Ray Data calls on graceful actor exit.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from reasoner_ray.core.rows import VQARow

if TYPE_CHECKING:
    import pyarrow as pa

OUTPUT_COLUMNS = (
    "question_id", "style", "sample_index", "temperature", "text", "finish_reason", "prompt_tokens",
    "completion_tokens", "round", "answer", "answer_type", "choices", "tags",
)
SAMPLED_COLUMNS = ("token_ids", "token_logprobs", "prompt_digest")
TASK_COLUMN = "task"


@dataclass(frozen=True)
class GenerationPlan:
    """What to generate per question: (style, temperature, samples) passes, with a base seed."""

    passes: tuple[tuple[str, float, int], ...]
    max_tokens: int
    top_p: float = 1.0
    seed: int = 0
    round: int = 0
    ignore_eos: bool = False  # fixed-length outputs, for throughput benchmarks
    logprobs: bool = False  # keep the sampled token ids and their log-probs (SAMPLED_COLUMNS)

    @classmethod
    def rollouts(cls, temperatures: list[float], samples: int, max_tokens: int, top_p: float, seed: int, round: int,
                 ignore_eos: bool = False, logprobs: bool = False):
        return cls(tuple(("cot", t, samples) for t in temperatures), max_tokens, top_p, seed, round, ignore_eos,
                   logprobs)

    @classmethod
    def evaluation(cls, styles: list[str], max_tokens: int, round: int):
        return cls(tuple((s, 0.0, 1) for s in styles), max_tokens, 1.0, 0, round)


class GenerationActor:
    """A Ray Data callable class: one vLLM engine per actor.

    The engine is built and driven from one thread of its own. Ray Data runs `__init__` on the actor's main
    thread but `__call__` on a worker thread; on CPU, vLLM binds the OpenMP threads of the thread that builds
    the engine to its cores, and a forward pass from another thread gets a fresh, unbound OpenMP team.
    """

    def __init__(self, settings, plans: dict[str, GenerationPlan], num_engines: int = 1):
        from concurrent.futures import ThreadPoolExecutor

        from reasoner_ray.engines.vllm_generator import VLLMGenerator

        if settings.cpu_cores == 0:  # not set: share this node's cores evenly between the stage's engines
            settings = replace(settings, cpu_cores=max(1, len(os.sched_getaffinity(0)) // num_engines))
        self.plans = plans
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm-engine")
        self.generator = self._engine_thread.submit(VLLMGenerator, settings).result()

    def __call__(self, batch: dict[str, Any]) -> "pa.Table":
        return self._engine_thread.submit(self._generate, batch).result()

    def _generate(self, batch: dict[str, Any]) -> "pa.Table":
        rows = [VQARow.model_validate_json(j) for j in batch["row"]]
        tasks = list(batch[TASK_COLUMN]) if len(self.plans) > 1 else [next(iter(self.plans))] * len(rows)
        sampled = any(plan.logprobs for plan in self.plans.values())
        out: dict[str, list] = {c: [] for c in OUTPUT_COLUMNS + (SAMPLED_COLUMNS if sampled else ())}
        for task, plan in self.plans.items():
            mine = [row for row, t in zip(rows, tasks) if t == task]
            if not mine:
                continue
            before = len(out["text"])
            self._generate_plan(plan, mine, out)
            if len(self.plans) > 1:
                out.setdefault(TASK_COLUMN, []).extend([task] * (len(out["text"]) - before))
        return _table(out)

    def _generate_plan(self, plan: GenerationPlan, rows: list[VQARow], out: dict[str, list]) -> None:
        offset = 0  # sample indices run on across passes, so (question, sample_index) is unique
        for style, temperature, n in plan.passes:
            seed = None if temperature == 0 else plan.seed * 1000 + plan.round
            results = self.generator.generate(rows, style, n=n, temperature=temperature, max_tokens=plan.max_tokens,
                                              top_p=plan.top_p, seed=seed, ignore_eos=plan.ignore_eos,
                                              logprobs=plan.logprobs)
            for row, samples in zip(rows, results):
                for i, s in enumerate(samples):
                    out["question_id"].append(row.id)
                    out["style"].append(style)
                    out["sample_index"].append(offset + i)
                    out["temperature"].append(temperature)
                    out["text"].append(s.text)
                    out["finish_reason"].append(s.finish_reason or "")
                    out["prompt_tokens"].append(s.prompt_tokens)
                    out["completion_tokens"].append(s.completion_tokens)
                    out["round"].append(plan.round)
                    out["answer"].append(row.answers)
                    out["answer_type"].append(row.answer_type)
                    out["choices"].append(row.choices or [])
                    out["tags"].append(json.dumps(row.tags))  # JSON text: its readers json.loads it
                    if "token_ids" in out:  # empty for a plan without log-probs sharing the pass with one that has
                        out["token_ids"].append(list(s.token_ids) if plan.logprobs else [])
                        out["token_logprobs"].append(list(s.token_logprobs or ()) if plan.logprobs else [])
                        out["prompt_digest"].append(s.prompt_digest if plan.logprobs else "")
            offset += n

    def __del__(self) -> None:
        generator = getattr(self, "generator", None)
        if generator is not None:
            generator.close()


def _table(out: dict[str, list]):
    """The output rows with fixed column types: a batch whose lists are all empty (a greedy plan's token ids, say)
    would otherwise get Arrow's null type, and files of one folder would disagree."""
    import pyarrow as pa

    int64, float64, strings = pa.int64(), pa.float64(), pa.list_(pa.string())
    types = {"sample_index": int64, "prompt_tokens": int64, "completion_tokens": int64, "round": int64,
             "temperature": float64, "answer": strings, "choices": strings, "token_ids": pa.list_(int64),
             "token_logprobs": pa.list_(float64)}
    return pa.Table.from_pydict(out, schema=pa.schema([(c, types.get(c, pa.string())) for c in out]))


def generate_dataset(questions, settings, plans: dict[str, GenerationPlan], num_engines: int, batch_size: int,
                     gpus_per_engine: float = 0.0):
    """questions: a Ray Dataset with a `row` column (VQARow JSON) and, with more than one plan, a `task` column
    naming each row's plan. Returns the lazily generated dataset."""
    # One block per batch, split before any engine holds a CPU: Ray Data hands whole blocks to actors (fewer
    # blocks than engines leaves engines idle), and a repartition task queued behind engines that hold every CPU
    # of the node would never run.
    from ray.data import ActorPoolStrategy

    blocks = max(num_engines, -(-questions.count() // batch_size))
    with warnings.catch_warnings():  # Ray 2.60 names no parameter for actor restarts yet; these still apply
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return questions.repartition(blocks).materialize().map_batches(
            GenerationActor,
            fn_constructor_kwargs={"settings": settings, "plans": plans, "num_engines": num_engines},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=num_engines),
            num_cpus=1,
            num_gpus=gpus_per_engine,
            max_restarts=-1,
            max_task_retries=-1,
        )
