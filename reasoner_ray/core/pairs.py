"""Preference pairs from scored samples, as in the paper (arXiv 2410.16198).

Per question: keep it when its sample accuracy lies in a band (default [0.25, 0.85]); pair a correct chain
(chosen) with an incorrect one (rejected) at random, at most `max_pairs` pairs; never two identical texts, never a
chosen that does not score strictly higher than its rejected; optionally cut both chains to their first
`truncate_words` whitespace words first (the paper's best: 90). Randomness is seeded per question, so the result
does not depend on the order of the samples or on which other questions are in the batch.

`consistent_chosen` refuses as chosen a correct chain whose own arithmetic is false somewhere (core/reward/
consistency.py: right by luck, it would teach the false step); it can still be a rejected chain if it was wrong.
`sound_chosen` goes further where the source has a step checker (reasoner_ray/data/step_checks.py: it uses the
row's annotation, which outcome-only data lacks): a correct chain the checker calls lucky (a digit misread or a
step wrong on the way to a guessed yes/no or option) is never chosen. `steps_rejected` is its counterpart on the
other side: a wrong chain the checker calls a misread is never rejected, so every pair parts at a reasoning step.
DPO of the language model cannot teach reading (the paper's recipe freezes the vision tower), and pairs that part
at a digit's reading were measured to teach misreads (docs/method.md). `conclusions_rejected=False` also refuses
a wrong chain whose every step is right and only its conclusion is wrong (the option letter, the yes/no): where the
policy names an option at chance such a question sits in the accuracy band by luck, and its pairs ask for a lookup
the model has not learned rather than a step.

Two options aim a pair at the step where a chain goes wrong (Step-DPO, arXiv 2406.18629): `prefer_shared_prefix`
picks, among a question's (correct, incorrect) combinations, those whose chains share the longest word prefix first
(they part where the wrong chain's step goes wrong; random among equals), and `cut_after_parting` = k cuts both
chains k words after the first word where they differ, so the loss sees the shared steps and the parting step, not
what each chain wrote after it.

`parting_logp_margin` = m keeps only pairs whose rejected chain parts from the chosen one on a token the sampling
policy found likely: at the first token where the two differ, the rejected token's log-probability is at most m
nats below the chosen token's (0: the policy preferred the wrong token there). A sampled slip into a token the
policy gave a few percent is an error greedy decoding never makes; a pair built on it teaches the most likely
decoding nothing. It needs the sampled tokens and log-probs (`ScoredSample.token_ids`, `token_logprobs`).

A sample without a final answer (reason "unparsed") counts as incorrect in the accuracy and may be a rejected
chain; a question none of whose samples has a final answer is dropped as "unparsed". A sample whose check timed
out (reason "timeout", math) is unknown, not wrong: the checker's bound is hit by correct answers on a loaded
machine, so it is left out of the accuracy and of every pair (counted as `samples_unscored`); a question with
nothing but such samples is dropped as "unscored".
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from reasoner_ray.core.diagnosis import LUCKY, MISREAD, WRONG_CONCLUSION
from reasoner_ray.core.reward import GOLD_ERROR, TIMEOUT, UNPARSED
from reasoner_ray.core.reward.consistency import false_equations
from reasoner_ray.core.rows import ImageRef, PreferenceRow, RolloutRow

DEFAULT_BAND = (0.25, 0.85)
DEFAULT_MAX_PAIRS = 3

# Why a question yields no pair, checked in this order.
DROP_GOLD_ERROR = "gold_error"  # its gold answer could not be read (reason GOLD_ERROR from the reward stage)
DROP_UNPARSED = "unparsed"  # no sample had a final answer
DROP_UNSCORED = "unscored"  # every sample's check timed out: nothing is known about the question
DROP_ALL_CORRECT = "all_correct"
DROP_ALL_WRONG = "all_wrong"
DROP_OUTSIDE_BAND = "outside_band"
DROP_NO_DISTINCT_PAIR = "no_distinct_pair"  # every correct/incorrect pair had equal texts or scores

_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class ScoredSample:
    """One scored chain; the reward stage's output row has these fields (and more)."""

    question_id: str
    sample_index: int
    text: str
    value: float
    correct: bool
    reason: str | None = None
    token_ids: tuple[int, ...] | None = None  # as sampled, when the rollouts kept them
    token_logprobs: tuple[float, ...] | None = None
    step_check: str | None = None  # the source's step checker's class (data/step_checks.py); None: no checker

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | RolloutRow) -> ScoredSample:
        """From a scored rollout row (a RolloutRow or its dict, e.g. a Ray Data row); extra keys are ignored."""
        get = record.get if isinstance(record, Mapping) else lambda name: getattr(record, name, None)
        return cls(
            question_id=str(get("question_id")),
            sample_index=int(get("sample_index")),
            text=str(get("text")),
            value=float(get("value")),
            correct=bool(get("correct")),
            reason=get("reason"),
            token_ids=_optional_tuple(get("token_ids")),
            token_logprobs=_optional_tuple(get("token_logprobs")),
            step_check=get("step_check") or None,
        )


def _optional_tuple(values: Any) -> tuple | None:
    return None if values is None else tuple(values)


@dataclass(frozen=True, slots=True)
class Pair:
    question_id: str
    chosen: str  # truncated when truncate_words is set
    rejected: str
    chosen_score: float
    rejected_score: float
    chosen_index: int  # sample_index of each chain, to find its sampling settings
    rejected_index: int
    # The text was cut by truncate_words: the chain did not end there, so training must not add an end of turn.
    chosen_truncated: bool = False
    rejected_truncated: bool = False

    def to_preference_row(
        self,
        question: str,
        image: ImageRef,
        messages: list[dict[str, Any]],
        round: int = 0,
        sampling: dict[str, Any] | None = None,
    ) -> PreferenceRow:
        """The training row, with the prompt the caller holds for this question_id."""
        return PreferenceRow(
            question_id=self.question_id,
            question=question,
            image=image,
            messages=messages,
            chosen=self.chosen,
            rejected=self.rejected,
            chosen_score=self.chosen_score,
            rejected_score=self.rejected_score,
            round=round,
            sampling=sampling or {},
            chosen_truncated=self.chosen_truncated,
            rejected_truncated=self.rejected_truncated,
        )


@dataclass(frozen=True, slots=True)
class PairStats:
    samples_seen: int = 0
    samples_unscored: int = 0  # left out: their check timed out
    questions_seen: int = 0
    questions_kept: int = 0
    pairs: int = 0
    dropped_gold_error: int = 0
    dropped_unscored: int = 0
    dropped_unparsed: int = 0
    dropped_all_correct: int = 0
    dropped_all_wrong: int = 0
    dropped_outside_band: int = 0
    dropped_no_distinct_pair: int = 0
    # correct chains of kept-band questions never chosen: a false equation (consistent_chosen) or lucky (sound_chosen)
    chosen_refused: int = 0
    # wrong chains of kept-band questions never rejected: misreads (steps_rejected)
    rejected_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class PairResult:
    pairs: list[Pair]
    stats: PairStats


def build_pairs(
    samples: Iterable[ScoredSample],
    band: tuple[float, float] = DEFAULT_BAND,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    truncate_words: int | None = None,
    seed: int = 0,
    prefer_shared_prefix: bool = False,
    cut_after_parting: int | None = None,
    consistent_chosen: bool = False,
    parting_logp_margin: float | None = None,
    sound_chosen: bool = False,
    steps_rejected: bool = False,
    conclusions_rejected: bool = True,
) -> PairResult:
    """Pairs for every question among `samples` (scored chains of any number of questions), with statistics."""
    low, high = band
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"band must satisfy 0 <= low <= high <= 1, got {band}")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    if truncate_words is not None and truncate_words < 1:
        raise ValueError(f"truncate_words must be None or >= 1, got {truncate_words}")
    if cut_after_parting is not None and cut_after_parting < 1:
        raise ValueError(f"cut_after_parting must be None or >= 1, got {cut_after_parting}")
    if parting_logp_margin is not None and parting_logp_margin < 0:
        raise ValueError(f"parting_logp_margin must be None or >= 0, got {parting_logp_margin}")

    by_question: dict[str, list[ScoredSample]] = defaultdict(list)
    unscored = 0
    for sample in samples:
        by_question[sample.question_id]  # a question whose every sample timed out is still seen (and dropped)
        if parting_logp_margin is not None and (sample.token_ids is None or sample.token_logprobs is None):
            raise ValueError(f"parting_logp_margin needs each chain's sampled tokens and log-probs; sample "
                             f"{sample.sample_index} of {sample.question_id!r} has none (rollouts without log-probs)")
        if sample.reason == TIMEOUT:
            unscored += 1
        else:
            by_question[sample.question_id].append(sample)

    pairs: list[Pair] = []
    drops: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for question_id in sorted(by_question):
        group = by_question[question_id]
        drop = _drop_reason(group, low, high)
        if drop is None:
            rng = random.Random(f"{seed}:{question_id}")  # str seeds hash stably across processes
            question_pairs, question_refused = _pairs_for_question(
                group, max_pairs, truncate_words, rng, prefer_shared_prefix, cut_after_parting, consistent_chosen,
                parting_logp_margin, sound_chosen, steps_rejected, conclusions_rejected)
            pairs.extend(question_pairs)
            refused.update(question_refused)
            if not question_pairs:
                drop = DROP_NO_DISTINCT_PAIR
        if drop is not None:
            drops[drop] += 1

    stats = PairStats(
        samples_seen=sum(len(g) for g in by_question.values()) + unscored,
        samples_unscored=unscored,
        questions_seen=len(by_question),
        questions_kept=len(by_question) - sum(drops.values()),
        pairs=len(pairs),
        chosen_refused=refused["chosen"],
        rejected_refused=refused["rejected"],
        **{f"dropped_{reason}": count for reason, count in drops.items()},
    )
    return PairResult(pairs, stats)


def _drop_reason(group: list[ScoredSample], low: float, high: float) -> str | None:
    if not group:
        return DROP_UNSCORED
    if any(s.reason == GOLD_ERROR for s in group):
        return DROP_GOLD_ERROR
    if all(s.reason == UNPARSED for s in group):
        return DROP_UNPARSED
    accuracy = sum(s.correct for s in group) / len(group)
    if accuracy == 1.0:
        return DROP_ALL_CORRECT
    if accuracy == 0.0:
        return DROP_ALL_WRONG
    if not low <= accuracy <= high:
        return DROP_OUTSIDE_BAND
    return None


def _pairs_for_question(
    group: list[ScoredSample], max_pairs: int, truncate_words: int | None, rng: random.Random,
    prefer_shared_prefix: bool = False, cut_after_parting: int | None = None, consistent_chosen: bool = False,
    parting_logp_margin: float | None = None, sound_chosen: bool = False, steps_rejected: bool = False,
    conclusions_rejected: bool = True,
) -> tuple[list[Pair], dict[str, int]]:
    """(the question's pairs, how many of its correct chains were refused as chosen and wrong ones as rejected)."""
    # Sorted so that the input order of the samples does not change the result.
    ordered = sorted(group, key=lambda s: (s.sample_index, s.text))
    right = [s for s in ordered if s.correct]
    choosable = [s for s in right if not (consistent_chosen and false_equations(s.text))
                 and not (sound_chosen and s.step_check == LUCKY)]
    correct = _unique_texts(choosable, truncate_words)
    all_wrong = [s for s in ordered if not s.correct]
    rejectable = [s for s in all_wrong if not (steps_rejected and s.step_check == MISREAD)
                  and (conclusions_rejected or s.step_check != WRONG_CONCLUSION)]
    wrong = _unique_texts(rejectable, truncate_words)
    candidates = [
        (c_text, c, w_text, w)
        for c_text, c in correct
        for w_text, w in wrong
        if c_text != w_text and c.value > w.value
        and (parting_logp_margin is None or likely_parting(c, w, parting_logp_margin))
    ]
    rng.shuffle(candidates)
    if prefer_shared_prefix:  # a stable sort: random order among equal prefixes
        candidates.sort(key=lambda cand: -shared_prefix_words(cand[0], cand[2]))
    # Prefer pairs that reuse no chain, so the few pairs a question gets cover as many chains as possible.
    picked, used_chosen, used_rejected = [], set(), set()
    for candidate in candidates:
        if len(picked) == max_pairs:
            break
        if candidate[0] not in used_chosen and candidate[2] not in used_rejected:
            picked.append(candidate)
            used_chosen.add(candidate[0])
            used_rejected.add(candidate[2])
    for candidate in candidates:
        if len(picked) == max_pairs:
            break
        if candidate not in picked:
            picked.append(candidate)
    if cut_after_parting is not None:
        picked = [(cut[0], c, cut[1], w) for c_text, c, w_text, w in picked
                  for cut in [_cut_after_parting(c_text, w_text, cut_after_parting)]]
    return [
        Pair(
            question_id=c.question_id,
            chosen=c_text,
            rejected=w_text,
            chosen_score=c.value,
            rejected_score=w.value,
            chosen_index=c.sample_index,
            rejected_index=w.sample_index,
            chosen_truncated=c_text != c.text,
            rejected_truncated=w_text != w.text,
        )
        for c_text, c, w_text, w in picked
    ], {"chosen": len(right) - len(choosable), "rejected": len(all_wrong) - len(rejectable)}


def rejected_classes(pairs: Iterable[Pair], step_checks: Mapping[tuple[str, int], str | None]) -> dict[str, int]:
    """How many pairs have a rejected chain of each step-checker class (data/step_checks.py), most first: the kinds
    of error the pairs teach against. `step_checks`: (question_id, sample_index) -> class; chains without a class
    (no checker for their source) are left out."""
    counts = Counter(step_checks.get((p.question_id, p.rejected_index)) for p in pairs)
    counts.pop(None, None)
    return dict(counts.most_common())


def shared_prefix_words(a: str, b: str) -> int:
    """How many leading whitespace words two chains share."""
    n = 0
    for x, y in zip(_WORD.findall(a), _WORD.findall(b)):
        if x != y:
            break
        n += 1
    return n


def likely_parting(chosen: ScoredSample, rejected: ScoredSample, margin: float) -> bool:
    """Whether, at the first token where the two sampled chains differ, the rejected chain's token is at most
    `margin` nats less likely than the chosen chain's (False when neither differs from the other's prefix)."""
    a, b = chosen.token_ids or (), rejected.token_ids or ()
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if k is None:
        return False
    return rejected.token_logprobs[k] >= chosen.token_logprobs[k] - margin


def _cut_after_parting(chosen: str, rejected: str, k: int) -> tuple[str, str]:
    """Both chains up to `k` words past the first word where they differ (a chain shorter than that stays whole)."""
    keep = shared_prefix_words(chosen, rejected) + k
    return truncate(chosen, keep), truncate(rejected, keep)


def _unique_texts(group: list[ScoredSample], truncate_words: int | None) -> list[tuple[str, ScoredSample]]:
    """(text as trained on, sample), one per distinct text: duplicate chains would make duplicate pairs."""
    seen: dict[str, ScoredSample] = {}
    for sample in group:
        seen.setdefault(truncate(sample.text, truncate_words), sample)
    return list(seen.items())


def truncate(text: str, words: int | None) -> str:
    """The text up to the end of its `words`-th whitespace-separated word, original spacing kept."""
    if words is None:
        return text
    for count, match in enumerate(_WORD.finditer(text), start=1):
        if count == words:
            return text[: match.end()]
    return text
