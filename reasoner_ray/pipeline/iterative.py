"""The whole method as a sequence of stages: [distill] -> [SFT -> eval [-> diagnose]] -> rounds of
rollouts -> rewards -> pairs -> reference log-probs -> DPO -> eval [-> verifier -> verify], then the report.

Every model a stage produces lives at `<stage output>/model` (a HF folder that transformers and vLLM load), so
the policy of round r and the reference are found from the run directory alone, and a restarted job picks
up exactly where the manifest says it stopped.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.core.data_regime import rollout_source
from reasoner_ray.core.metrics import majority_baseline
from reasoner_ray.core.rundir import round_stage
from reasoner_ray.pipeline import generation_stages as gen
from reasoner_ray.pipeline.report import markdown_table, report_rows, write_report
from reasoner_ray.pipeline.runner import StageCounts, StageIO, StageRunner
from reasoner_ray.pipeline.verifier_stage import verifier_stage
from reasoner_ray.pipeline.verify_stage import question_sets, verify_plan, verify_stage

log = logging.getLogger(__name__)

MODEL_DIR = "model"
DISTILLED_ROWS = "rows.jsonl"  # verified rows with rationales, in the distill stage's output


@dataclass
class RunResult:
    report_path: Path
    table: str
    final_model: str


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


def _majority_baseline(config: Config) -> float:
    from reasoner_ray.data.readers import iter_rows

    return majority_baseline(row.answers[0] for row in iter_rows(config.data.eval))


def distill_stage(config: Config):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.distill import check_outcome, run_distillation

        result = run_distillation(config, str(io.output))
        check_outcome(result, config.distill.max_failed_fraction)  # not usable: the stage fails, a rerun resends
        return StageCounts(result.input_rows, result.verified, {"rejected": dict(result.rejected_by_reason),
                                                                 "sft_rows": result.paths["rows.jsonl"],
                                                                 "cost_usd": result.summary.get("estimated_cost_usd")})

    return run


def sft_stage(config: Config, base_model: str, rows_path: str):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.train.sft import run_sft

        result = run_sft(config, base_model, rows_path, str(io.work))
        model = place_model(result.model_dir, io)
        return StageCounts(result.counts.get("rows", 0), result.steps,
                           {"model": str(model), "metrics_path": result.history_path, "counts": result.counts})

    return run


def reference_stage(config: Config, ref_model: str, pairs_path: Path):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.train.reference import compute_reference_logps

        out = io.output / gen.PAIRS_FILE
        counts = compute_reference_logps(config, ref_model, str(pairs_path), str(out))
        inputs = sum(1 for line in pairs_path.open() if line.strip())
        return StageCounts(inputs, counts.get("written", 0), {"reference_model": ref_model, "counts": counts})

    return run


def dpo_stage(config: Config, policy: str, pairs_path: Path):
    def run(io: StageIO) -> StageCounts:
        from reasoner_ray.train.dpo import run_dpo

        inputs = sum(1 for line in pairs_path.open() if line.strip())
        if inputs == 0:
            # Every question was all-correct, all-wrong or outside the band: nothing to learn this round.
            log.warning("no preference pairs this round; the policy is carried over unchanged")
            model = place_model(policy, io)
            return StageCounts(0, 0, {"model": str(model), "skipped": "no pairs"})
        result = run_dpo(config, policy, str(pairs_path), str(io.work))
        model = place_model(result.model_dir, io)
        return StageCounts(inputs, result.steps, {"model": str(model), "metrics_path": result.history_path,
                                                  "counts": result.counts, "final": result.metrics})

    return run


def verifies(config: Config, round_index: int) -> bool:
    """Whether round `round_index` has the verify stage (and, with verifier.enabled, the verifier stage)."""
    return (config.eval.samples > 0 and config.eval.verifier
            and (config.eval.verify_rounds == "all" or round_index == config.rounds))


def diagnoses(config: Config) -> bool:
    """Whether the SFT model's sampled chains on data.validation are diagnosed (stage diagnose_sft)."""
    return config.eval.samples > 0 and config.data.validation is not None


def _prefetch(config: Config, runner: StageRunner, policy: str, round_index: int) -> list[gen.Prefetch]:
    """What later stages sample from `policy` (the SFT model's diagnosis, round `round_index`'s verifier when it
    runs, the next round's rollouts), for the evaluation's engines to generate in the same pass: unless turned
    off or already done."""
    wanted = []
    if config.rollout.reuse_eval_engines:
        if round_index == 0 and diagnoses(config):
            wanted.append(("diagnose_sft", "", config.data.validation, verify_plan(config, 0)))
        if round_index > 0 and verifies(config, round_index):
            for part, source in question_sets(config).items():
                wanted.append((round_stage(round_index, "verify"), part, source, verify_plan(config, round_index)))
        if round_index < config.rounds:
            wanted.append((round_stage(round_index + 1, "rollouts"), "", rollout_source(config, round_index + 1),
                           gen.rollout_plan(config, round_index + 1)))
    return [gen.Prefetch(stage, runner.run_dir.work(stage), policy, source, plan, part)
            for stage, part, source, plan in wanted if not runner.manifest.done(stage)]


def run_pipeline(config: Config, redo: str | None = None) -> RunResult:
    """Run (or resume) every stage; `redo` first forgets that completed stage and every stage after it."""
    from reasoner_ray.models.loading import resolve_model_path
    from reasoner_ray.pipeline.preflight import preflight

    started = time.time()
    runner = StageRunner(config, redo)
    policy = resolve_model_path(config)
    log.info("base model: %s", policy)
    preflight(config, runner.manifest, policy)

    if config.distill.enabled:
        runner.run("distill", distill_stage(config))
    if config.sft.enabled:
        # From the layout, not the manifest's absolute path: a run directory may be moved or synced between nodes.
        rows_path = str(runner.output("distill") / DISTILLED_ROWS) if config.distill.enabled else config.data.train.path
        runner.run("sft", sft_stage(config, policy, rows_path))
        policy = str(runner.output("sft") / MODEL_DIR)
        runner.run("eval_sft", gen.eval_stage(config, policy, 0, _prefetch(config, runner, policy, 0)))
        if diagnoses(config):
            runner.run("diagnose_sft", gen.diagnose_stage(config, policy))
    reference = sft_model = policy

    for r in range(1, config.rounds + 1):
        name = lambda stage: round_stage(r, stage)  # noqa: E731
        runner.run(name("rollouts"), gen.rollouts_stage(config, policy, r))
        runner.run(name("rewards"), gen.rewards_stage(config, runner.output(name("rollouts"))))
        runner.run(name("pairs"), gen.pairs_stage(config, runner.output(name("rewards")), r, policy))
        runner.run(name("reference"), reference_stage(config, reference, runner.output(name("pairs")) / gen.PAIRS_FILE))
        runner.run(name("dpo"), dpo_stage(config, policy, runner.output(name("reference")) / gen.PAIRS_FILE))
        policy = str(runner.output(name("dpo")) / MODEL_DIR)
        runner.run(name("eval"), gen.eval_stage(config, policy, r, _prefetch(config, runner, policy, r)))
        if verifies(config, r):
            verifier_model = None
            if config.verifier.enabled:
                # round i's rollouts were sampled by round i-1's policy (the SFT model for round 1)
                samplers = [sft_model] + [str(runner.output(round_stage(i, "dpo")) / MODEL_DIR) for i in range(1, r)]
                sampled = [(i, runner.output(round_stage(i, "rewards")), samplers[i - 1]) for i in range(1, r + 1)]
                if "skipped" not in runner.run(name("verifier"), verifier_stage(config, sft_model, sampled)).extra:
                    verifier_model = str(runner.output(name("verifier")) / MODEL_DIR)
            runner.run(name("verify"), verify_stage(config, policy, reference, r, sft_model, verifier_model))
        if config.dpo.reference == "previous":
            reference = policy

    report_dir = runner.output("report")
    report_dir.mkdir(parents=True, exist_ok=True)
    notes = [f"majority-answer baseline on the evaluation split: {100 * _majority_baseline(config):.1f}%",
             f"final model: {policy}", f"total wall time this invocation: {time.time() - started:.0f} s",
             f"config: {config.run.dir}/config.json"]
    path = write_report(runner.manifest, config.rounds, report_dir, f"reasoner-ray run: {config.run.name}", notes)
    runner.run_dir.commit("report")
    return RunResult(path, markdown_table(report_rows(runner.manifest, config.rounds)), policy)
