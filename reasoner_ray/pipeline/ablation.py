"""The paper's SFT data ablation (arXiv 2410.16198): SFT on direct answers only, on CoT only, and on the
mixture, each model evaluated with the CoT and with the direct instruction.

Each variant is the main pipeline with `rounds: 0` in its own run directory `<run.dir>/ablation/<variant>`
(resumable like any run), all sharing one teacher cache, so the teacher answers each question once. The mixture
trains first, for `sft.epochs` (or `sft.steps`); the other two then train for the same number of optimizer steps
(`sft.steps`), so the table compares data at an equal training budget, not data and budget at once.

A model trained on direct answers only replies to the CoT instruction with a bare answer and no `### Answer:`
line; strict CoT scoring would give it 0 for the format alone. The table therefore also scores CoT replies
leniently (a reply with no final-answer line is scored whole, as a direct reply), and reports both.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from reasoner_ray.core.config import Config

log = logging.getLogger(__name__)

# variant -> config overrides; the mixture first: its step count is the others' budget
VARIANTS: dict[str, dict[str, bool]] = {
    "mixture": {"include_cot": True, "include_direct": True},
    "direct_only": {"include_cot": False, "include_direct": True},
    "cot_only": {"include_cot": True, "include_direct": False},
}


@dataclass
class VariantResult:
    variant: str
    summary: dict  # {style: {group: {n, accuracy, stderr}}}, strict scoring
    cot_lenient: dict  # {group: {n, accuracy, stderr}}
    steps: int = 0


def variant_config(config: Config, variant: str, steps: int | None = None) -> Config:
    """The variant's run; `steps`: its SFT budget in optimizer steps (None: the config's own)."""
    base = Path(config.run.dir) / "ablation"
    sft = {**VARIANTS[variant], **({"steps": steps} if steps is not None else {})}
    return config.model_copy(update={
        "run": config.run.model_copy(update={"dir": str(base / variant), "name": f"{config.run.name}-{variant}"}),
        "sft": config.sft.model_copy(update=sft),
        "distill": config.distill.model_copy(update={"cache_dir": config.distill.cache_dir or str(base / "teacher-cache")}),
        "rounds": 0,
    })


def lenient_cot(scored_dir: Path) -> dict:
    import pyarrow.dataset as pads

    from reasoner_ray.core.metrics import summarize
    from reasoner_ray.operators.scoring import score_batch

    table = pads.dataset(str(scored_dir), format="parquet").to_table(
        columns=["style", "text", "answer", "answer_type", "choices", "tags"]).to_pandas()
    cot = table[table["style"] == "cot"].assign(style="direct")  # score every CoT reply as a direct one
    rescored = score_batch(cot)
    records = [{"style": "cot", "answer_type": t, "value": v, "reason": reason, "tags": json.loads(g)}
               for t, v, reason, g in zip(rescored["answer_type"], rescored["value"], rescored["reason"], rescored["tags"])]
    return summarize(records).get("cot", {})


def run_ablation(config: Config) -> list[VariantResult]:
    from reasoner_ray.pipeline.iterative import run_pipeline
    from reasoner_ray.pipeline.runner import StageRunner

    results, budget = [], None
    for variant in VARIANTS:
        cfg = variant_config(config, variant, budget)
        log.info("ablation: %s (run dir %s%s)", variant, cfg.run.dir, f", {budget} SFT steps" if budget else "")
        run_pipeline(cfg)
        runner = StageRunner(cfg)
        eval_dir = runner.output("r0/eval")
        summary = json.loads((eval_dir / "summary.json").read_text())
        steps = runner.manifest.stages["sft"].outputs
        budget = budget or steps
        results.append(VariantResult(variant, summary, lenient_cot(eval_dir / "scored"), steps))
    return results


def _cell(acc: dict | None) -> str:
    return f"{100 * acc['accuracy']:.1f} ± {100 * acc['stderr']:.1f}" if acc else "-"


def ablation_table(results: list[VariantResult], groups: tuple[str, ...] = ("all", "multi_step")) -> str:
    lines = ["| SFT data | steps | group | n | asked for CoT | asked for CoT (lenient) | asked for direct |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for g in groups:
            cot, direct = r.summary.get("cot", {}).get(g), r.summary.get("direct", {}).get(g)
            if cot is None and direct is None:
                continue
            n = (cot or direct)["n"]
            lines.append(f"| {r.variant} | {r.steps} | {g} | {n} | {_cell(cot)} | {_cell(r.cot_lenient.get(g))} | "
                         f"{_cell(direct)} |")
    return "\n".join(lines)
