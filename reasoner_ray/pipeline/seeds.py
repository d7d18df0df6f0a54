"""The same config from scratch under several seeds, and each figure's mean and range across them.

One run proves little where learning has a moment that varies from run to run (a tiny model starts reading at a
step no two seeds share), so the method's figures are reported over seeds. Each seed is the main pipeline in its
own run directory `<run.dir>/seed<k>` (resumable like any run; `run.seed` = k: the tiny model's initial weights,
the SFT sample order, every sampling seed). The data stay the same: the sources' questions do not depend on the
run seed. `seed_table` reads the manifests back: CoT and direct accuracy after SFT and after each round, the
round's gain over SFT, the verifier's method chosen on validation against majority voting, and the diagnosis.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasoner_ray.core.config import Config
from reasoner_ray.core.rundir import Manifest

log = logging.getLogger(__name__)


def seed_config(config: Config, seed: int) -> Config:
    return config.model_copy(update={"run": config.run.model_copy(update={
        "dir": str(Path(config.run.dir) / f"seed{seed}"), "seed": seed, "name": f"{config.run.name}-seed{seed}"})})


def run_seeds(config: Config, seeds: list[int]) -> dict[int, Manifest]:
    from reasoner_ray.pipeline.iterative import run_pipeline
    from reasoner_ray.storage import RunDir

    manifests = {}
    for seed in seeds:
        cfg = seed_config(config, seed)
        log.info("seed %d: run dir %s", seed, cfg.run.dir)
        run_pipeline(cfg)
        manifests[seed] = RunDir(cfg.run.dir).load_manifest()
    return manifests


def _accuracy(manifest: Manifest, stage: str, style: str) -> float | None:
    rec = manifest.stages.get(stage)
    return rec.extra[style]["accuracy"] if rec is not None and style in rec.extra else None


def figures(manifest: Manifest, rounds: int) -> dict[str, float]:
    """One run's figures, in points (%), by name."""
    out: dict[str, float] = {}
    labels = [("sft", "r0/eval")] + [(f"r{r}", f"r{r}/eval") for r in range(1, rounds + 1)]
    for label, stage in labels:
        for style in ("cot", "direct"):
            acc = _accuracy(manifest, stage, style)
            if acc is not None:
                out[f"{label} {style}"] = 100 * acc
    sft = out.get("sft cot")
    for r in range(1, rounds + 1):
        if sft is not None and f"r{r} cot" in out:
            out[f"r{r} cot gain over sft"] = out[f"r{r} cot"] - sft
    diagnosis = manifest.stages.get("r0/diagnose")
    if diagnosis is not None and diagnosis.extra["diagnosis"].get("step_error_share") is not None:
        d = diagnosis.extra["diagnosis"]
        out["sft wrong samples that went wrong in a step"] = 100 * d["step_error_share"]
        out["sft questions in the pair band"] = 100 * d["in_band"] / max(1, d["questions"])
    for r in range(1, rounds + 1):
        rec = manifest.stages.get(f"r{r}/verify")
        if rec is None:
            continue
        top, best = rec.extra["summary"], rec.extra.get("selection", {}).get("best")
        out[f"r{r} majority of N"] = 100 * top["majority"]["accuracy"]
        if best in top:  # one row whichever method each seed's validation chose (seed_table names them)
            out[f"r{r} verifier chosen on validation vs majority"] = 100 * top[best]["vs_majority"]
            score = best.split("/", 1)[1]
            auc = rec.extra.get("auroc", {}).get(score)
            if auc and auc["questions"]:
                out[f"r{r} its AUROC (x100)"] = 100 * auc["mean"]
    return out


def chosen_methods(manifest: Manifest, rounds: int) -> dict[int, str]:
    """The verifier method each verified round chose on validation, by round."""
    out = {}
    for r in range(1, rounds + 1):
        rec = manifest.stages.get(f"r{r}/verify")
        best = rec.extra.get("selection", {}).get("best") if rec is not None else None
        if best:
            out[r] = best
    return out


def seed_table(manifests: dict[int, Manifest], rounds: int) -> str:
    """| figure | mean | min | max | per seed |, over the seeds that have the figure."""
    per_seed = {seed: figures(m, rounds) for seed, m in manifests.items()}
    names = list(dict.fromkeys(name for f in per_seed.values() for name in f))
    seeds = list(manifests)
    lines = ["| figure | mean | min | max | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|---|---|" + "---|" * len(seeds)]
    for name in names:
        values = [per_seed[s].get(name) for s in seeds]
        known = [v for v in values if v is not None]
        cells = " | ".join("-" if v is None else f"{v:.1f}" for v in values)
        lines.append(f"| {name} | {sum(known) / len(known):.1f} | {min(known):.1f} | {max(known):.1f} | {cells} |")
    chosen = {seed: chosen_methods(m, rounds) for seed, m in manifests.items()}
    for r in sorted({r for methods in chosen.values() for r in methods}):
        named = ", ".join(f"seed {s} {chosen[s][r]}" for s in seeds if r in chosen[s])
        lines.append(f"\nr{r}'s verifier chosen on validation: {named}")
    return "\n".join(lines)
