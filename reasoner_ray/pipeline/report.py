"""The run report: a Markdown table per round and PNG plots, built from the manifest and stage outputs.

Rows: "sft" (round 0) and each DPO round. Columns: pairs, CoT and direct accuracy (± standard error), the mean
DPO reward margin of the round's last logged steps, and wall time per stage. Further sections: accuracy per
group (answer types and row tags such as `multi_step`), DPO training metrics per round (rewards of chosen and
rejected, margins, pair accuracy), what the pairs teach against and where chains go wrong (sources with a step
checker), and the verifiers (when a round has a `verify` stage). Plots:
accuracy per round, DPO reward margins over steps, and why questions gave no pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reasoner_ray.core.rundir import Manifest
from reasoner_ray.storage import write_atomic

# Training counts that are examples left out before training (train/collate.py, train/data.py).
LEFT_OUT_KEYS = ("prompt_too_long", "no_rationale")
DROP_KEYS = ("dropped_all_correct", "dropped_all_wrong", "dropped_outside_band", "dropped_unparsed",
             "dropped_no_distinct_pair", "dropped_gold_error", "dropped_unscored")


def _acc(manifest: Manifest, stage: str, style: str) -> str:
    rec = manifest.stages.get(stage)
    if rec is None or style not in rec.extra:
        return "-"
    s = rec.extra[style]
    return f"{100 * s['accuracy']:.1f} ± {100 * s['stderr']:.1f}"


def _metric_history(path: str | None, key: str) -> list[tuple[int, float]]:
    if not path or not Path(path).is_file():
        return []
    points = []
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if key in rec:
            points.append((int(rec.get("step", len(points))), float(rec[key])))
    return points


def _margin_history(path: str | None) -> list[tuple[int, float]]:
    return _metric_history(path, "rewards/margins")


def _tail_mean(path: str | None, key: str, last: int = 5) -> str:
    tail = [v for _, v in _metric_history(path, key)[-last:]]
    return f"{sum(tail) / len(tail):.3f}" if tail else "-"


def _eval_stages(manifest: Manifest, rounds: int) -> list[tuple[str, str]]:
    evals = [("sft", "r0/eval")] + [(f"r{r}", f"r{r}/eval") for r in range(1, rounds + 1)]
    return [(label, st) for label, st in evals if st in manifest.stages]


def group_table(manifest: Manifest, rounds: int) -> str:
    """Accuracy (%) ± standard error per group (answer type, tag) for every evaluated model and style."""
    evals = [(label, manifest.stages[st].extra.get("summary") or {}) for label, st in _eval_stages(manifest, rounds)]
    cols = [(label, style) for label, summary in evals for style in ("cot", "direct") if style in summary]
    groups = sorted({g for _, summary in evals for by_group in summary.values() for g in by_group},
                    key=lambda g: (g != "all", ":" in g, g))
    if not cols or not groups:
        return ""
    lines = ["| group | n | " + " | ".join(f"{label} {style}" for label, style in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    summaries = dict(evals)
    for g in groups:
        n = next((s[st][g]["n"] for _, s in evals for st in s if g in s[st]), 0)
        cells = []
        for label, style in cols:
            a = summaries[label].get(style, {}).get(g)
            cells.append(f"{100 * a['accuracy']:.1f} ± {100 * a['stderr']:.1f}" if a else "-")
        lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dpo_table(manifest: Manifest, rounds: int) -> str:
    """Mean of the last 5 logged DPO steps per round: implicit rewards of chosen and rejected, margin, accuracy."""
    keys = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "loss")
    lines = ["| round | pairs | steps | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    for r in range(1, rounds + 1):
        rec = manifest.stages.get(f"r{r}/dpo")
        if rec is None:
            continue
        path = rec.extra.get("metrics_path")
        pairs = manifest.stages[f"r{r}/pairs"].outputs if f"r{r}/pairs" in manifest.stages else "-"
        lines.append(f"| {r} | {pairs} | {rec.outputs} | " + " | ".join(_tail_mean(path, k) for k in keys) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def pairs_table(manifest: Manifest, rounds: int) -> str:
    """Per round whose pairs were counted by class: questions kept, pairs, the step-checker classes of the rejected
    chains (what the pairs teach against), and the chains the pair options refused on each side."""
    lines = ["| round | questions kept | pairs | rejected chains by class | chosen refused | rejected refused |",
             "|---|---|---|---|---|---|"]
    for r in range(1, rounds + 1):
        rec = manifest.stages.get(f"r{r}/pairs")
        classes = rec.extra.get("rejected_classes") if rec else None
        if not classes:  # no step checker for the source, or a run from before the count
            continue
        stats = rec.extra.get("stats", {})
        named = ", ".join(f"{k} {v}" for k, v in classes.items())
        lines.append(f"| {r} | {stats.get('questions_kept', '-')} | {rec.outputs} | {named} | "
                     f"{stats.get('chosen_refused', '-')} | {stats.get('rejected_refused', '-')} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def training_table(manifest: Manifest, rounds: int) -> str:
    """Per training stage: examples trained on, optimizer steps, and what was left out and why (passes that did not
    fill a last global batch, prompts too long for train.max_length, rows with no rationale)."""
    lines = []
    for name in ["sft", *(f"r{r}/dpo" for r in range(1, rounds + 1))]:
        rec = manifest.stages.get(name)
        if rec is None:
            continue
        counts = dict(rec.extra.get("counts") or {})
        used = counts.pop("examples_used", "-")
        not_trained = counts.pop("example_passes_not_trained", 0)
        left_out = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k in LEFT_OUT_KEYS and v) or "-"
        note = rec.extra.get("skipped", "")
        if not lines:
            lines = ["| stage | examples | steps | passes not trained (last partial batch) | left out |", "|---|---|---|---|---|"]
        lines.append(f"| {name} | {used} | {rec.outputs}{f' ({note})' if note else ''} | {not_trained} | {left_out} |")
    return "\n".join(lines)


def verifier_table(manifest: Manifest, rounds: int) -> str:
    """Per round with a verify stage, over the evaluation questions: accuracy ± se of each selection method, its
    paired difference to majority voting (± se), the AUROC of its score (per question, mean ± se), the score's
    rank correlation with the likelihood within a question, its accuracy on validation and the weighted vote's
    temperature chosen there; the method chosen on validation is marked."""
    lines = []
    for r in range(1, rounds + 1):
        rec = manifest.stages.get(f"r{r}/verify")
        if rec is None:
            continue
        if not lines:
            lines = verifier_header("round")
        greedy = manifest.stages.get(f"r{r}/eval")
        if greedy is not None and "cot" in greedy.extra:
            g = greedy.extra["cot"]
            lines.append(f"| {r} | greedy | {100 * g['accuracy']:.1f} ± {100 * g['stderr']:.1f} | - | - | - | - |")
        lines += verifier_rows(r, rec.extra)
    return "\n".join(lines)


def verifier_header(label: str) -> list[str]:
    """The two header lines of a verifier table whose rows are `verifier_rows`."""
    return [f"| {label} | method | accuracy (%) | vs majority (points) | score's AUROC | rank corr. with likelihood "
            "| validation (%) |", "|---|---|---|---|---|---|---|"]


def verifier_rows(label, extra: dict) -> list[str]:
    """Table rows of one verify stage's record (see verifier_table)."""
    summary, aurocs = extra.get("summary", {}), extra.get("auroc", {})
    correlations = extra.get("rank_correlation_with_likelihood", {})
    selection = extra.get("selection", {})
    validation, temperatures, best = selection.get("validation", {}), selection.get("temperatures", {}), selection.get("best")
    rows = []
    for method, a in summary.items():
        score = method.split("/", 1)[1] if "/" in method else None
        auc = aurocs.get(score) if score else None
        auc_cell = f"{auc['mean']:.3f} ± {auc['stderr']:.3f} ({auc['questions']})" if auc and auc["questions"] else "-"
        rho = correlations.get(score) if score else None
        rho_cell = f"{rho['mean']:+.2f} ({rho['questions']})" if rho and rho["questions"] else "-"
        val = validation.get(method)
        val_cell = f"{100 * val['accuracy']:.1f}" if val else "-"
        if method.startswith("weighted_vote/") and temperatures.get(score, {}).get("multiple") is not None:
            val_cell += f" (T = {temperatures[score]['multiple']:g} sd)"
        name = f"**{method}** (best on validation)" if method == best else method
        rows.append(f"| {label} | {name} | {100 * a['accuracy']:.1f} ± {100 * a['stderr']:.1f} | "
                    f"{100 * a['vs_majority']:+.1f} ± {100 * a['vs_majority_stderr']:.1f} | {auc_cell} | {rho_cell} | "
                    f"{val_cell} |")
    return rows


def diagnosis_table(manifest: Manifest, rounds: int) -> str:
    """Per stage with a diagnosis (core/diagnosis.py): chains, wrong ones, the share of checked wrong chains that
    read the image right and went wrong in a step, the checker's classes, the share of checked right chains that
    were lucky (a wrong step on the way to a guessed answer), and questions inside the pair band."""
    names = ["r0/eval", "r0/diagnose"] + [f"r{r}/{s}" for r in range(1, rounds + 1) for s in ("rewards", "eval")]
    lines = []
    for name in names:
        rec = manifest.stages.get(name)
        d = rec.extra.get("diagnosis") if rec else None
        if not d:
            continue
        if not lines:
            lines = ["| stage | chains | wrong | wrong in a step (read right) | classes of the wrong chains | "
                     "right by luck | questions in the pair band |", "|---|---|---|---|---|---|---|"]
        share = "-" if d["step_error_share"] is None else f"{100 * d['step_error_share']:.1f}%"
        lucky = "-" if d.get("lucky_share") is None else f"{100 * d['lucky_share']:.1f}%"  # older runs lack it
        classes = ", ".join(f"{k} {v}" for k, v in d["classes"].items()) or "-"
        band = f"{d['in_band']} of {d['questions']} (all right {d['all_right']}, all wrong {d['all_wrong']})" \
            if "in_band" in d else "-"
        lines.append(f"| {name} | {d['chains']} | {d['wrong']} | {share} | {classes} | {lucky} | {band} |")
    return "\n".join(lines)


def report_rows(manifest: Manifest, rounds: int) -> list[dict[str, Any]]:
    rows = [{"round": "sft", "pairs": "-", "cot": _acc(manifest, "r0/eval", "cot"),
             "direct": _acc(manifest, "r0/eval", "direct"), "margin": "-",
             "seconds": {k: manifest.stages[k].seconds for k in ("distill", "sft", "r0/eval") if k in manifest.stages},
             "generated_in": {}}]
    for r in range(1, rounds + 1):
        stages = {k.split("/", 1)[1]: v for k, v in manifest.stages.items() if k.startswith(f"r{r}/")}
        if not stages:
            continue
        margins = _margin_history(stages["dpo"].extra.get("metrics_path")) if "dpo" in stages else []
        tail = [m for _, m in margins[-5:]]
        rows.append({
            "round": str(r),
            "pairs": stages["pairs"].outputs if "pairs" in stages else "-",
            "cot": _acc(manifest, f"r{r}/eval", "cot"),
            "direct": _acc(manifest, f"r{r}/eval", "direct"),
            "margin": f"{sum(tail) / len(tail):.3f}" if tail else "-",
            "seconds": {k: v.seconds for k, v in stages.items()},
            "generated_in": {k: v.extra["generated_in"] for k, v in stages.items() if "generated_in" in v.extra},
        })
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| round | pairs | CoT acc. (%) | direct acc. (%) | DPO reward margin | wall time per stage (s) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        # A stage whose replies an evaluation's pass generated took its time there: say where.
        where = row["generated_in"]
        times = ", ".join(f"{k} {v:.0f}" + (f" (generated in {where[k]})" if k in where else "")
                          for k, v in row["seconds"].items())
        lines.append(f"| {row['round']} | {row['pairs']} | {row['cot']} | {row['direct']} | {row['margin']} | {times} |")
    return "\n".join(lines)


def _plots(manifest: Manifest, rounds: int, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    evals = _eval_stages(manifest, rounds)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for style in ("cot", "direct"):
        pts = [(label, manifest.stages[st].extra.get(style)) for label, st in evals]
        pts = [(label, s) for label, s in pts if s]
        if pts:
            ax.errorbar([p[0] for p in pts], [100 * p[1]["accuracy"] for p in pts],
                        yerr=[100 * p[1]["stderr"] for p in pts], marker="o", capsize=3, label=style)
    ax.set_ylabel("accuracy (%)"), ax.set_title("held-out accuracy per round")
    if ax.containers:
        ax.legend()
    fig.tight_layout(), fig.savefig(out / "accuracy.png", dpi=100), plt.close(fig)
    names.append("accuracy.png")

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in range(1, rounds + 1):
        rec = manifest.stages.get(f"r{r}/dpo")
        pts = _margin_history(rec.extra.get("metrics_path")) if rec else []
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"round {r}")
    ax.set_xlabel("step"), ax.set_ylabel("rewards/margins"), ax.set_title("DPO reward margins")
    if ax.lines:
        ax.legend()
    fig.tight_layout(), fig.savefig(out / "margins.png", dpi=100), plt.close(fig)
    names.append("margins.png")

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bottoms = [0] * rounds
    labels = [f"r{r}" for r in range(1, rounds + 1)]
    for key in DROP_KEYS:
        vals = []
        for r in range(1, rounds + 1):
            rec = manifest.stages.get(f"r{r}/pairs")
            vals.append(rec.extra.get("stats", {}).get(key, 0) if rec else 0)
        if any(vals):
            ax.bar(labels, vals, bottom=bottoms, label=key.removeprefix("dropped_"))
            bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.set_ylabel("questions"), ax.set_title("why questions gave no pair")
    if ax.containers:
        ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(out / "no_pair_reasons.png", dpi=100), plt.close(fig)
    names.append("no_pair_reasons.png")
    return names


def write_report(manifest: Manifest, rounds: int, out: Path, title: str, notes: list[str] = ()) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rows = report_rows(manifest, rounds)
    plots = _plots(manifest, rounds, out)
    body = [f"# {title}", "", markdown_table(rows), ""]
    body += [f"- {n}" for n in notes]
    for heading, table in (("Accuracy by group", group_table(manifest, rounds)),
                           ("Training data", training_table(manifest, rounds)),
                           ("What the pairs teach against (the step checker's class of each rejected chain)",
                            pairs_table(manifest, rounds)),
                           ("DPO training (mean of the last 5 logged steps)", dpo_table(manifest, rounds)),
                           ("Where chains go wrong (step checker)", diagnosis_table(manifest, rounds)),
                           ("Verifiers of N sampled CoT chains per question (policy: the round's DPO model; "
                            "verifier: the separate V-STaR verifier)", verifier_table(manifest, rounds))):
        if table:
            body += ["", f"## {heading}", "", table]
    body += [""] + [f"![{p}]({p})" for p in plots]
    path = out / "report.md"
    write_atomic(path, "\n".join(body) + "\n")
    return path
