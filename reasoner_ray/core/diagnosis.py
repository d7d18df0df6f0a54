"""Where chains go wrong, counted: the step checker's classes over wrong chains, and per question how often the
samples are right (the paper's accuracy band: only questions inside it give preference pairs).

`diagnose(records, band)`: records are scored chains (`question_id`, `value`, `reason`, `step_check`: "" or None
where no checker applies). Returns the
chains and wrong chains counted, the checker's classes of the wrong ones, the share of checked wrong chains that
read their input right and went wrong in a step (`step_error_share`: DPO on the language model can fix those;
a misread it cannot), the share of checked right chains whose written steps are wrong somewhere (`lucky_share`:
a guessed yes/no or option; as a chosen chain such a chain teaches its wrong step), and with a band, how many
questions have a sample accuracy inside it. Chains that cannot be scored (metrics.UNSCORED_REASONS) are left out.
`precondition_failures(diagnosis)` says, in words, where it falls short of the method's precondition, and
`reading_drift(first, later)` whether a round's rollouts misread the input more often than round 1's did. Pure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from reasoner_ray.core.metrics import UNSCORED_REASONS

# What a step checker (reasoner_ray/data/step_checks.py) says of a chain: where it first went wrong.
CORRECT = "correct"
MISREAD = "misread"  # an input read wrong from the image (or not read at all)
ARITHMETIC_SLIP = "arithmetic_slip"  # a step on the right numbers with a wrong result
WRONG_OPERANDS = "wrong_operands"  # a step on numbers the question's program does not reach (binding, order)
WRONG_CONCLUSION = "wrong_conclusion"  # every step right, the comparison, option or final answer wrong
INCOMPLETE = "incomplete"  # the steps stop early, each one right so far
NO_STEPS = "no_steps"  # no step to check (a bare answer, or nothing readable)
LUCKY = "lucky"  # a right final answer reached through a misread or a wrong written step (a yes/no or option guess)
STEP_ERRORS = (ARITHMETIC_SLIP, WRONG_OPERANDS, WRONG_CONCLUSION)  # read right, then a step went wrong


def diagnose(records: Iterable[dict], band: tuple[float, float] | None = None) -> dict:
    per_question: dict[str, list[float]] = defaultdict(list)
    classes: Counter = Counter()
    chains = wrong = right_checked = lucky = 0
    for r in records:
        if r.get("reason") in UNSCORED_REASONS:
            continue
        chains += 1
        per_question[r["question_id"]].append(float(r["value"]))
        check = r.get("step_check")
        if float(r["value"]) < 1.0:
            wrong += 1
            if check and check != CORRECT:
                classes[check] += 1
        elif check:
            right_checked += 1
            lucky += check == LUCKY
    checked = sum(classes.values())
    out = {"chains": chains, "wrong": wrong, "questions": len(per_question),
           "classes": dict(classes.most_common()),
           "step_error_share": (sum(classes[c] for c in STEP_ERRORS) / checked) if checked else None,
           "lucky_share": lucky / right_checked if right_checked else None}
    if band is not None:
        lo, hi = band
        accs = [sum(v) / len(v) for v in per_question.values()]
        out.update(band=list(band), in_band=sum(lo <= a <= hi for a in accs),
                   all_right=sum(a == 1.0 for a in accs), all_wrong=sum(a == 0.0 for a in accs))
    return out


# The share of checked wrong chains that must read the input right for DPO rounds on the language model to have
# something to fix (the precondition of docs/method.md: a model that cannot read gains nothing from them).
MIN_STEP_ERROR_SHARE = 0.7


def precondition_failures(diagnosis: dict) -> list[str]:
    """Where this SFT model's chains fall short of the method's precondition, one sentence each; [] if nothing says
    so (or there is no step checker to ask)."""
    failures = []
    share, classes = diagnosis.get("step_error_share"), diagnosis.get("classes", {})
    if share is not None and share < MIN_STEP_ERROR_SHARE:
        failures.append(
            f"only {100 * share:.1f}% of the SFT model's checked wrong chains read the input right and went wrong in "
            f"a step ({classes.get(MISREAD, 0):,} of {sum(classes.values()):,} misread it; the method needs at least {100 * MIN_STEP_ERROR_SHARE:.0f}%): "
            f"DPO of the language model does not repair reading, so the rounds can fix at most those {100 * share:.1f}%")
    if diagnosis.get("in_band") == 0:
        lo, hi = diagnosis["band"]
        failures.append(f"no question has a sample accuracy inside the pair band [{lo}, {hi}], so the rounds will "
                        "find few or no preference pairs")
    return failures


# How much larger a share of a round's rollouts may misread the input than of round 1's (sampled by the SFT model)
# before the job warns: pairs that part at a digit's reading taught a model misreads, and the more it misread, the
# more such pairs the next round built (docs/method.md).
MAX_MISREAD_RISE = 0.05


def reading_drift(first: dict, later: dict) -> str | None:
    """A sentence when the chains of `later` (a round's rollouts' diagnosis) misread the input at least
    MAX_MISREAD_RISE more often than those of `first` (round 1's); None otherwise, or with no step checker."""
    shares = []
    for d in (first, later):
        if d.get("step_error_share") is None or not d.get("chains"):
            return None
        shares.append(d["classes"].get(MISREAD, 0) / d["chains"])
    before, after = shares
    if after - before < MAX_MISREAD_RISE:
        return None
    return (f"{100 * after:.1f}% of these rollouts misread the input, against {100 * before:.1f}% of round 1's: "
            "the rounds are teaching misreads (DPO of the language model cannot teach reading; pairs that part at "
            "the reading push the policy off it)")
