"""jobs/evaluate.py's work: every benchmark of `evaluate.benchmarks` (name -> source) evaluated with
`evaluation.evaluate_source`, for a model folder or an endpoint, and, with `eval.samples` and a reference, the
verify stage's comparison of verifiers; the paper-style table, results.json and replies.jsonl. A benchmark's
folder is read back only when the same model, source and settings produced it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from reasoner_ray.core.config import Config, DataSource, EndpointConfig
from reasoner_ray.pipeline.evaluation import (
    EVAL_SUMMARY,
    METRIC_NAMES,
    EvalResult,
    evaluate_source,
)
from reasoner_ray.pipeline.generate import EndpointBackend, ModelBackend, read_table
from reasoner_ray.storage import write_atomic

log = logging.getLogger(__name__)


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
    from reasoner_ray.pipeline.stages.verify import verify_stage

    on_source = config.model_copy(update={"data": config.data.model_copy(update={"eval": source})})
    out.mkdir(parents=True, exist_ok=True)
    counts = verify_stage(on_source, policy, reference, 0)(StageIO("verify", out, out / "work", None))
    return {k: counts.extra[k] for k in ("summary", "auroc", "rank_correlation_with_likelihood", "selection")}


def verifier_table(results: dict[str, EvalResult]) -> str:
    from reasoner_ray.pipeline.report import verifier_header, verifier_rows

    lines = verifier_header("benchmark")
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
        write_atomic(folder / "result.json", json.dumps({"questions": res.questions, "replies": res.replies,
                                                         "tokens": res.tokens, "verifier": res.verifier,
                                                         "produced_by": wanted}))
        results[name] = res
    styles = list(config.eval.styles)
    table = paper_table(results, styles)
    verifiers = verifier_table(results)
    if verifiers:
        table += f"\n\nThe model as a verifier of {config.eval.samples} sampled CoT chains (accuracy, %):\n\n{verifiers}"
    write_atomic(out_dir / "table.md", f"# Evaluation of {backend.name}\n\n{table}\n")
    partial = out_dir / ".replies.jsonl.partial"  # renamed when whole, as the other files are written
    with partial.open("w") as fh:
        replies = sum(export_replies(out_dir / name, name, fh) for name in results)
    partial.replace(out_dir / "replies.jsonl")
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
    write_atomic(out_dir / "results.json", json.dumps(report, indent=2))
    return results
