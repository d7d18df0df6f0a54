"""Evaluation, one implementation: questions -> replies (a model folder through vLLM actors, or an OpenAI-compatible
endpoint) -> each reply scored with its benchmark's metric -> accuracy per style and group with standard errors.

The main job's eval stages call `evaluate_source` with a ModelBackend; jobs/evaluate.py calls `evaluate_benchmarks`
with either backend. Layout of one evaluation folder: `generated/` and `scored/` (Parquet: every reply with its
parsed answer, value, correct, reason), `summary.json` (metrics.summarize, written last: its presence marks the
folder complete).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reasoner_ray.core.config import Config, DataSource, EndpointConfig
from reasoner_ray.core.metrics import ENDPOINT_ERROR, summarize

if TYPE_CHECKING:
    from reasoner_ray.operators.generation import GenerationPlan

log = logging.getLogger(__name__)

EVAL_SUMMARY = "summary.json"
# What each answer type's score is called in a table (the benchmark's own metric).
METRIC_NAMES = {"multiple_choice": "accuracy", "yes_no": "accuracy", "number": "relaxed accuracy", "open": "VQA accuracy",
                "anls": "ANLS", "math": "accuracy", "relaxed": "relaxed accuracy", "mathvista": "accuracy"}


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


@dataclass
class EvalResult:
    questions: int
    replies: int
    summary: dict[str, dict]
    tokens: dict[str, int] = field(default_factory=dict)  # prompt / completion, and cached replies
    verifier: dict[str, dict] = field(default_factory=dict)  # the verify stage: summary, auroc, selection
    also_questions: dict[str, int] = field(default_factory=dict)  # questions of each task generated alongside


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


def score_replies(batch):
    """The reward stage's scoring; a reply the endpoint never gave is `endpoint_error` (unscored, not wrong)."""
    from reasoner_ray.operators.scoring import score_batch

    scored = score_batch(batch)
    if "error" in scored:
        failed = scored["error"].astype(str) != ""
        scored.loc[failed, "reason"] = ENDPOINT_ERROR
    return scored


def evaluate_source(config: Config, backend, source: DataSource, out: Path, round_index: int = 0,
                    also: dict[str, GenerationTask] | None = None) -> EvalResult:
    """`also`: more generation for the same engines' pass (the main job: the next round's rollouts)."""
    import ray

    from reasoner_ray.operators.generation import GenerationPlan

    plan = GenerationPlan.evaluation(list(config.eval.styles), config.eval.max_tokens, round_index)
    counts = generate(config, backend, {"eval": GenerationTask(source, plan, out / "generated"), **(also or {})})
    n_questions = counts.pop("eval")
    ray.data.read_parquet(str(out / "generated")).map_batches(score_replies, batch_format="pandas", num_cpus=0.5) \
        .write_parquet(str(out / "scored"))
    table = read_table(out / "scored")
    records = table.select(["style", "answer_type", "value", "reason", "tags"]).to_pylist()
    for r in records:
        r["tags"] = json.loads(r["tags"])
    summary = summarize(records)
    tokens = {"prompt": int(sum(table["prompt_tokens"].to_pylist())),
              "completion": int(sum(table["completion_tokens"].to_pylist()))}
    if "cached" in table.column_names:
        tokens["cached_replies"] = int(sum(table["cached"].to_pylist()))
    for style, s in summary.items():
        if s["all"]["unscored"]:
            log.warning("eval %s: %s replies left out of the accuracy (cannot be scored)", style, s["all"]["unscored"])
    (out / EVAL_SUMMARY).write_text(json.dumps(summary, indent=2))
    return EvalResult(n_questions, len(records), summary, tokens, also_questions=counts)


def benchmark_sources(config: Config) -> dict[str, DataSource]:
    return dict(config.evaluate.benchmarks) or {"eval": config.data.eval}


def _metric(summary: dict[str, dict]) -> str:
    counts = Counter()
    for style in summary.values():
        for group, acc in style.items():
            if group in METRIC_NAMES:
                counts[group] += acc["n"]
    return METRIC_NAMES[counts.most_common(1)[0][0]] if counts else "-"


def paper_table(results: dict[str, EvalResult], styles: list[str]) -> str:
    """Benchmarks as rows, one column per style (accuracy ± standard error, in %), and the mean of the rows."""
    head = "| benchmark | metric | questions | " + " | ".join(f"{s} (%)" for s in styles) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(styles)]
    means: dict[str, list[float]] = {s: [] for s in styles}
    for name, res in results.items():
        cells = []
        for s in styles:
            acc = res.summary.get(s, {}).get("all")
            if acc and acc["n"]:
                cells.append(f"{100 * acc['accuracy']:.1f} ± {100 * acc['stderr']:.1f}")
                means[s].append(100 * acc["accuracy"])
            else:
                cells.append("-")
        lines.append(f"| {name} | {_metric(res.summary)} | {res.questions} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        avg = [f"{sum(v) / len(v):.1f}" if len(v) == len(results) else "-" for v in means.values()]
        lines.append("| average | | | " + " | ".join(avg) + " |")
    return "\n".join(lines)


def export_replies(folder: Path, benchmark: str, fh) -> int:
    """Every scored reply of one benchmark as JSON lines (the question's gold included); returns the count."""
    cols = ["question_id", "style", "sample_index", "text", "parsed", "value", "correct", "reason", "answer",
            "answer_type", "prompt_tokens", "completion_tokens"]
    table = read_table(folder / "scored")
    n = 0
    for rec in table.select([c for c in cols if c in table.column_names]).to_pylist():
        fh.write(json.dumps({"benchmark": benchmark, **rec}, default=str) + "\n")
        n += 1
    return n


def cost_usd(endpoint: EndpointConfig, tokens: dict[str, int]) -> float | None:
    price = endpoint.prices.get(endpoint.model)
    if price is None:
        return None
    return (tokens.get("prompt", 0) * price.get("input", 0.0) + tokens.get("completion", 0) * price.get("output", 0.0)) / 1e6


def load_result(folder: Path) -> EvalResult:
    """A completed benchmark folder (resume): its summary and counts, read back."""
    summary = json.loads((folder / EVAL_SUMMARY).read_text())
    meta = json.loads((folder / "result.json").read_text())
    return EvalResult(meta["questions"], meta["replies"], summary, meta.get("tokens", {}), meta.get("verifier", {}))


def verify_source(config: Config, policy: str, reference: str, source: DataSource, out: Path) -> dict[str, dict]:
    """The verify stage (N sampled CoT chains ranked by the implicit reward of `policy` against `reference`,
    vs majority voting) on one benchmark; returns {method: accuracy, vs majority}."""
    from reasoner_ray.pipeline.runner import StageIO
    from reasoner_ray.pipeline.verify_stage import verify_stage

    on_source = config.model_copy(update={"data": config.data.model_copy(update={"eval": source})})
    out.mkdir(parents=True, exist_ok=True)
    counts = verify_stage(on_source, policy, reference, 0)(StageIO("verify", out, out / "work", None))
    return {k: counts.extra[k] for k in ("summary", "auroc", "selection")}


def verifier_table(results: dict[str, EvalResult]) -> str:
    from reasoner_ray.pipeline.report import verifier_rows

    lines = ["| benchmark | method | accuracy (%) | vs majority (points) | score's AUROC | validation (%) |",
             "|---|---|---|---|---|---|"]
    for name, res in results.items():
        if res.verifier:
            lines += verifier_rows(name, res.verifier)
    return "\n".join(lines) if len(lines) > 2 else ""


def evaluate_benchmarks(config: Config, backend, out_dir: Path, reference: str | None = None) -> dict[str, EvalResult]:
    """Every benchmark of `evaluate.benchmarks` (or data.eval) under out_dir/<name>/; a benchmark whose folder
    is complete is read back, not redone, when the same model (backend.identity: a folder's content hash, an
    endpoint's model and revision), source, eval settings and reference produced it; otherwise it is redone. With `eval.samples` > 0 and a `reference` model folder (a model-folder
    backend only: the verifier needs log-probs), each benchmark also gets the verifier's comparison.
    Writes table.md, results.json and replies.jsonl in out_dir."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, EvalResult] = {}
    produced_by = {**backend.identity(), "eval": config.eval.model_dump(mode="json"),
                   "reference": ModelBackend(reference).identity() if reference else None}
    for name, source in benchmark_sources(config).items():
        folder = out_dir / name
        wanted = {**produced_by, "source": source.model_dump(mode="json")}
        if (folder / "result.json").is_file():
            done = json.loads((folder / "result.json").read_text()).get("produced_by")
            if done == wanted:
                log.info("benchmark %s: done earlier, read back", name)
                results[name] = load_result(folder)
                continue
            log.warning("benchmark %s: the results in %s were produced by %s, not %s: evaluating again", name,
                        folder, done, wanted)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("benchmark %s: %s (%s) with %s", name, source.format, source.path or source.split, backend.name)
        res = evaluate_source(config, backend, source, folder)
        if config.eval.samples > 0 and reference and isinstance(backend, ModelBackend):
            res.verifier = verify_source(config, backend.path, reference, source, folder / "verify")
        (folder / "result.json").write_text(json.dumps({"questions": res.questions, "replies": res.replies,
                                                         "tokens": res.tokens, "verifier": res.verifier,
                                                         "produced_by": wanted}))
        results[name] = res
    styles = list(config.eval.styles)
    table = paper_table(results, styles)
    verifiers = verifier_table(results)
    if verifiers:
        table += f"\n\nThe model as a verifier of {config.eval.samples} sampled CoT chains (accuracy, %):\n\n{verifiers}"
    (out_dir / "table.md").write_text(f"# Evaluation of {backend.name}\n\n{table}\n")
    with (out_dir / "replies.jsonl").open("w") as fh:
        replies = sum(export_replies(out_dir / name, name, fh) for name in results)
    tokens = Counter()
    for res in results.values():
        tokens.update(res.tokens)
    report = {"model": backend.name, "produced_by": backend.identity(), "benchmarks": {n: {"questions": r.questions, "replies": r.replies,
                                                         "summary": r.summary, "tokens": r.tokens,
                                                         "verifier": r.verifier}
                                                     for n, r in results.items()},
              "replies": replies, "tokens": dict(tokens)}
    if isinstance(backend, EndpointBackend):
        report["estimated_cost_usd"] = cost_usd(backend.endpoint, dict(tokens))
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    return results
