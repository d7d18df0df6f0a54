"""The whole method as a sequence of stages: [distill] -> [SFT -> r0/eval [-> r0/diagnose]] -> rounds of
rollouts -> rewards -> pairs -> reference log-probs -> DPO -> eval [-> verifier -> verify], then the report.
Each stage is one module of pipeline/stages; this module only puts them in order.

Every model a stage produces lives at `<stage output>/model` (a HF folder that transformers and vLLM load), so
the policy of round r and the reference are found from the run directory alone, and a restarted job picks
up exactly where the manifest says it stopped. The SFT model is round 0's policy: its evaluation and diagnosis
are the stages `r0/eval` and `r0/diagnose`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.core.data_regime import rollout_source
from reasoner_ray.core.diagnosis import precondition_failures, reading_drift
from reasoner_ray.core.metrics import majority_baseline
from reasoner_ray.core.rundir import round_stage
from reasoner_ray.pipeline.prefetch import Prefetch
from reasoner_ray.pipeline.report import markdown_table, report_rows, write_report
from reasoner_ray.pipeline.runner import MODEL_DIR, StageRunner
from reasoner_ray.pipeline.stages.diagnose import diagnose_stage
from reasoner_ray.pipeline.stages.distill import DISTILLED_ROWS, distill_stage
from reasoner_ray.pipeline.stages.dpo import dpo_stage
from reasoner_ray.pipeline.stages.evaluate import eval_stage
from reasoner_ray.pipeline.stages.pairs import PAIRS_FILE, pairs_stage
from reasoner_ray.pipeline.stages.reference import reference_stage
from reasoner_ray.pipeline.stages.rewards import rewards_stage
from reasoner_ray.pipeline.stages.rollouts import rollout_plan, rollouts_stage
from reasoner_ray.pipeline.stages.sft import sft_stage
from reasoner_ray.pipeline.stages.verifier import verifier_stage
from reasoner_ray.pipeline.stages.verify import question_sets, verify_plan, verify_stage

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    report_path: Path
    table: str
    final_model: str


def _majority_baseline(config: Config) -> float:
    from reasoner_ray.data.readers import iter_rows

    return majority_baseline(row.answers[0] for row in iter_rows(config.data.eval))


def verifies(config: Config, round_index: int) -> bool:
    """Whether round `round_index` has the verify stage (and, with verifier.enabled, the verifier stage)."""
    return (config.eval.samples > 0 and config.eval.verifier
            and (config.eval.verify_rounds == "all" or round_index == config.rounds))


def diagnoses(config: Config) -> bool:
    """Whether the SFT model's sampled chains on data.validation are diagnosed (stage r0/diagnose)."""
    return config.eval.samples > 0 and config.data.validation is not None


def _prefetch(config: Config, runner: StageRunner, policy: str, round_index: int) -> list[Prefetch]:
    """What later stages sample from `policy` (the SFT model's diagnosis, round `round_index`'s verifier when it
    runs, the next round's rollouts), for the evaluation's engines to generate in the same pass: unless turned
    off or already done."""
    wanted = []
    if config.rollout.reuse_eval_engines:
        if round_index == 0 and diagnoses(config):
            wanted.append(("r0/diagnose", "", config.data.validation, verify_plan(config, 0)))
        if round_index > 0 and verifies(config, round_index):
            for part, source in question_sets(config).items():
                wanted.append((round_stage(round_index, "verify"), part, source, verify_plan(config, round_index)))
        if round_index < config.rounds:
            wanted.append((round_stage(round_index + 1, "rollouts"), "", rollout_source(config, round_index + 1),
                           rollout_plan(config, round_index + 1)))
    return [Prefetch(stage, runner.run_dir.work(stage), policy, source, plan, part)
            for stage, part, source, plan in wanted if not runner.manifest.done(stage)]


def run_pipeline(config: Config, redo: str | None = None) -> RunResult:
    """Run (or resume) every stage; `redo` first forgets that completed stage and every stage after it."""
    from reasoner_ray.models.loading import resolve_model_path
    from reasoner_ray.pipeline.preflight import preflight

    started = time.time()
    runner = StageRunner(config, redo)
    warnings: list[str] = []  # shown on the console and kept in the report's notes
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
        runner.run("r0/eval", eval_stage(config, policy, 0, _prefetch(config, runner, policy, 0)))
        if diagnoses(config):
            diagnosis = runner.run("r0/diagnose", diagnose_stage(config, policy)).extra["diagnosis"]
            for failure in precondition_failures(diagnosis):
                log.warning("r0/diagnose: %s (docs/method.md)", failure)
                warnings.append(f"precondition not met (r0/diagnose): {failure}")
    reference = sft_model = policy
    first_diagnosis: dict = {}  # round 1's rollouts (sampled by the SFT model), where the chains go wrong

    for r in range(1, config.rounds + 1):
        name = lambda stage: round_stage(r, stage)  # noqa: E731
        runner.run(name("rollouts"), rollouts_stage(config, policy, r))
        diagnosis = (runner.run(name("rewards"), rewards_stage(config, runner.output(name("rollouts")))).extra
                     or {}).get("diagnosis", {})
        first_diagnosis = diagnosis if r == 1 else first_diagnosis
        if drift := reading_drift(first_diagnosis, diagnosis):
            if not config.pairs.steps_rejected:
                drift += "; pairs.steps_rejected keeps misreads out of the pairs"
            log.warning("%s: %s (docs/method.md)", name("rewards"), drift)
            warnings.append(f"{name('rewards')}: {drift}")
        runner.run(name("pairs"), pairs_stage(config, runner.output(name("rewards")), r, policy))
        runner.run(name("reference"), reference_stage(config, reference, runner.output(name("pairs")) / PAIRS_FILE))
        replayed = [runner.output(round_stage(i, "reference")) / PAIRS_FILE
                    for i in range(max(1, r - config.dpo.replay_rounds), r)]
        runner.run(name("dpo"), dpo_stage(config, policy, runner.output(name("reference")) / PAIRS_FILE, replayed, r))
        policy = str(runner.output(name("dpo")) / MODEL_DIR)
        runner.run(name("eval"), eval_stage(config, policy, r, _prefetch(config, runner, policy, r)))
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
             f"config: {config.run.dir}/config.json", *warnings]
    path = write_report(runner.manifest, config.rounds, report_dir, f"reasoner-ray run: {config.run.name}", notes)
    runner.run_dir.commit("report")
    return RunResult(path, markdown_table(report_rows(runner.manifest, config.rounds)), policy)
