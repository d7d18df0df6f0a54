"""The `r<k>/verify` stage: the round's DPO policy, and the separate verifier when there is one, as verifiers of
the policy's own sampled chains.

For every question of `data.eval` (and of `data.validation`, where settings are chosen) it samples `eval.samples`
CoT chains from the round's policy (vLLM actors, as rollouts do), scores each against the gold (reward stage),
and computes every token's log-prob under each model the scores need, on Ray tasks as the reference pass runs:
the policy and the DPO reference (the paper's verifier, scores `policy/*`), the separate verifier of stage
r<k>/verifier and its reference, the SFT model (`verifier/*`). Chains that could not be scored are left out and
counted. reasoner_ray.core.verifier then ranks the chains: best-of-N and reward-weighted voting for every score
(sum, per-token mean, worst step), against majority voting, one sample and the oracle. On validation it picks
each weighted vote's temperature and the best verifier method; on data.eval it reports every method, its paired
difference to majority voting, and each score's per-question AUROC.

Output: `<set>/generated/`, `<set>/scored/` (Parquet) and `<set>/chains.parquet` (every chain's scores) per set
(`test`, `validation`), and `summary.json`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.pipeline.runner import StageCounts, StageFn, StageIO
from reasoner_ray.storage import write_atomic

log = logging.getLogger(__name__)

VERIFY_SUMMARY = "summary.json"


def verify_plan(config: Config, round_index: int):
    """`eval.samples` CoT chains per evaluation question at `eval.sample_temperature`."""
    from reasoner_ray.operators.generation import GenerationPlan

    e = config.eval
    return GenerationPlan.rollouts([e.sample_temperature], e.samples, e.max_tokens, 1.0, config.run.seed, round_index)


def question_sets(config: Config) -> dict:
    """The verify stage's question sets: `test` (data.eval) and, when set, `validation` (data.validation)."""
    sets = {"test": config.data.eval}
    if config.data.validation is not None:
        sets["validation"] = config.data.validation
    return sets


def verify_stage(config: Config, policy: str, reference: str, round_index: int, sft: str | None = None,
                 verifier_model: str | None = None) -> StageFn:
    """`reference`: the DPO reference of `policy`; `verifier_model`: the separate verifier, whose reference is
    `sft`."""

    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.core import verifier

        extra: dict = {}
        records: dict[str, list[dict]] = {}
        n_questions, unscored = {}, {}
        for name, source in question_sets(config).items():
            n_questions[name], records[name], generated = _sample_and_score(config, io, policy, source, name,
                                                                            round_index)
            unscored[name] = generated.pop("unscored")
            # the evaluation set's keys as every generating stage records them (`generated_in`: adopted from the
            # evaluation's pass); the validation set's prefixed
            extra.update(generated if name == "test" else {f"{name}_{k}": v for k, v in generated.items()})
        forms = {"policy": (policy, reference, config.dpo.beta)}
        if verifier_model is not None:
            forms["verifier"] = (verifier_model, sft or reference, config.verifier.beta)
        chains = _chains(config, policy, records, forms)
        scores = list(next(iter(chains["test"])).scores) if chains["test"] else []
        selection = _select(chains.get("validation"), scores)
        temperatures = {s: selection["temperatures"][s]["temperature"] for s in selection["temperatures"]}
        groups = {r["question_id"]: [r["answer_type"], *json.loads(r["tags"])] for r in records["test"]}
        summary = verifier.evaluate(chains["test"], temperatures, lambda qid: groups[qid])
        aurocs = {s: verifier.mean_auroc(chains["test"], s) for s in scores}
        # how far each reward only restates the likelihood (the policy's reward ran against it: docs/method.md)
        with_likelihood = {s: verifier.mean_rank_correlation(chains["test"], s, "likelihood")
                           for s in scores if s != "likelihood"} if "likelihood" in scores else {}
        for name, set_chains in chains.items():
            _write_chains(io.output / name / "chains.parquet", set_chains)
        out = {"summary": summary, "auroc": aurocs, "rank_correlation_with_likelihood": with_likelihood,
               "selection": selection}
        write_atomic(io.output / VERIFY_SUMMARY, json.dumps(out, indent=2))
        top = summary["all"]
        best = selection.get("best")
        log.info("verify r%d: majority %.1f, oracle %.1f, best on validation %s: %s", round_index,
                 100 * top["majority"]["accuracy"], 100 * top["oracle"]["accuracy"], best,
                 f"{100 * top[best]['accuracy']:.1f}" if best in top else "-")
        return StageCounts(n_questions["test"], len(chains["test"]),
                           {"summary": top, "auroc": aurocs, "rank_correlation_with_likelihood": with_likelihood,
                            "selection": selection, "unscored_chains": unscored, **extra})

    return run


def _sample_and_score(config: Config, io: StageIO, policy: str, source, name: str, round_index: int):
    """(questions, scored chains, extra) of one question set, generated (or adopted) and scored."""
    import ray

    from reasoner_ray.core.metrics import UNSCORED_REASONS
    from reasoner_ray.operators.scoring import score_batch
    from reasoner_ray.pipeline.generate import read_table
    from reasoner_ray.pipeline.prefetch import generate_or_adopt

    folder = io.output / name
    n_q, _, generated = generate_or_adopt(config, io, policy, source, verify_plan(config, round_index),
                                          folder / "generated", part=name)
    ray.data.read_parquet(str(folder / "generated")).map_batches(score_batch, batch_format="pandas", num_cpus=0.5) \
        .write_parquet(str(folder / "scored"))
    cols = ["question_id", "sample_index", "text", "parsed", "value", "reason", "answer_type", "tags"]
    scored = read_table(folder / "scored", cols).to_pylist()
    # A chain that could not be scored (unreadable gold, a math check that timed out) is no label: left out.
    kept = sorted((r for r in scored if r["reason"] not in UNSCORED_REASONS),
                  key=lambda r: (r["question_id"], r["sample_index"]))
    return n_q, kept, {**generated, "unscored": len(scored) - len(kept)}


def _chains(config: Config, policy: str, records: dict[str, list[dict]], forms: dict) -> dict[str, list]:
    """Per question set, the chains with every score: `<form>/{sum,mean,step_min}` and `likelihood`."""
    from reasoner_ray.core import verifier
    from reasoner_ray.core.prompts import prompt_messages
    from reasoner_ray.data.readers import iter_rows
    from reasoner_ray.models.chat import load_processor

    items, owners = [], []
    for name, recs in records.items():
        rows = {row.id: row for row in iter_rows(question_sets(config)[name], check_image=False)}
        for r in recs:
            row = rows[r["question_id"]]
            items.append(({"image": row.image, "messages": prompt_messages(row, "cot")}, r["text"]))
            owners.append(name)
    references = {ref for _, ref, _ in forms.values()}
    models = {path for model, ref, _ in forms.values() for path in (model, ref)}
    logps = {path: _logps(config, path, items, as_reference=path in references) for path in sorted(models)}
    tokenizer = load_processor(policy).tokenizer
    out: dict[str, list] = {name: [] for name in records}
    flat = [r for name in records for r in records[name]]
    for i, (r, name) in enumerate(zip(flat, owners)):
        ids, policy_lps = logps[policy][i]
        steps = verifier.token_steps([tokenizer.decode([t]) for t in ids])
        scores = {"likelihood": verifier.likelihood(policy_lps)}
        for form, (model, ref, beta) in forms.items():
            for score, value in verifier.chain_scores(logps[model][i][1], logps[ref][i][1], steps, beta).items():
                scores[f"{form}/{score}"] = value
        out[name].append(verifier.Chain(r["question_id"], r["sample_index"], r["parsed"], float(r["value"]), scores))
    return out


def _select(validation: list | None, scores: list[str]) -> dict:
    """Weighted-vote temperatures and the best verifier method, chosen on the validation chains (no validation
    set: one standard deviation of each score, and no method chosen)."""
    from reasoner_ray.core import verifier

    if not validation:
        return {"temperatures": {s: {"temperature": 1.0, "multiple": None, "accuracy": None} for s in scores},
                "best": None, "validation": {}}
    temperatures = verifier.choose_temperatures(validation, scores)
    summary = verifier.evaluate(validation, {s: t["temperature"] for s, t in temperatures.items()}, lambda q: [])["all"]
    candidates = {m: a["accuracy"] for m, a in summary.items() if is_verifier_method(m)}
    best = max(candidates, key=lambda m: (candidates[m], m)) if candidates else None
    return {"temperatures": temperatures, "best": best, "validation": summary,
            "validation_auroc": {s: verifier.mean_auroc(validation, s) for s in scores}}


def is_verifier_method(method: str) -> bool:
    """A selection by a verifier's reward (not majority, one sample, the oracle or the policy's own likelihood)."""
    return method.startswith(("best_of_n/", "weighted_vote/")) and not method.endswith("/likelihood")


def _write_chains(path: Path, chains: list) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"question_id": c.question_id, "sample_index": c.sample_index, "parsed": c.parsed, "value": c.value,
             **{f"score/{k}": v for k, v in c.scores.items()}} for c in chains]
    pq.write_table(pa.Table.from_pylist(rows), path)


def _logps(config: Config, model_path: str, items, as_reference: bool):
    """Per-token log-probs under a model folder, over the tokens DPO trains on, on Ray tasks as the reference
    pass runs (`train.num_workers` shards, one GPU each with `train.use_gpu`, `dpo.ref_batch_size` chains per
    batch)."""
    from reasoner_ray.train.reference import run_sharded

    return run_sharded(config, score_responses, items, model_path, as_reference)


def score_responses(config_tree: dict, model_path: str, as_reference: bool, items, threads: int):
    """One shard, in a Ray task; a reference is loaded as the DPO stage loads it (a LoRA folder counts as its
    base model)."""
    from transformers.utils import logging as hf_logging

    from reasoner_ray.models.loading import load_model
    from reasoner_ray.train.reference import on_task_device, response_logps
    from reasoner_ray.train.steps import pair_encoder

    hf_logging.disable_progress_bar()
    config = Config.model_validate(config_tree)
    model, processor, mode = load_model(model_path, config.model.dtype, as_reference)
    model = on_task_device(model, config, threads)
    with mode():
        return response_logps(model, pair_encoder(processor, config), items, config.train.max_length,
                              config.dpo.ref_batch_size)
