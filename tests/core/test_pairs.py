"""The preference-pair builder: worked cases, then properties (never two corrects, cap and band respected)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasoner_ray.core.diagnosis import (
    ARITHMETIC_SLIP,
    CORRECT,
    LUCKY,
    MISREAD,
    WRONG_CONCLUSION,
)
from reasoner_ray.core.pairs import PairStats, ScoredSample, build_pairs, rejected_classes, truncate
from reasoner_ray.core.rows import ImageRef, PreferenceRow, RolloutRow, SampledTokens


def sample(qid: str, index: int, correct: bool, text: str | None = None, reason: str | None = None) -> ScoredSample:
    return ScoredSample(qid, index, text or f"{qid} chain {index}", 1.0 if correct else 0.0, correct, reason)


def question(qid: str, n_correct: int, n_total: int = 32) -> list[ScoredSample]:
    return [sample(qid, i, i < n_correct) for i in range(n_total)]


def test_band_edges_are_inclusive():
    samples = question("q8", 8) + question("q7", 7) + question("q27", 27) + question("q28", 28)
    result = build_pairs(samples)  # 8/32 = 0.25 and 27/32 = 0.84 kept; 7/32 and 28/32 = 0.875 dropped
    assert {p.question_id for p in result.pairs} == {"q8", "q27"}
    assert result.stats == PairStats(samples_seen=128, questions_seen=4, questions_kept=2, pairs=6,
                                     dropped_outside_band=2)  # fmt: skip


def test_drop_reasons():
    samples = (
        question("all_right", 4, 4)
        + question("all_wrong", 0, 4)
        + [sample("no_answer", i, False, reason="unparsed") for i in range(4)]  # noqa: E731
        + [sample("bad_gold", i, False, reason="gold_error") for i in range(4)]  # noqa: E731
        + [sample("same_text", 0, True, "identical"), sample("same_text", 1, False, "identical")]
    )
    stats = build_pairs(samples, band=(0.0, 1.0)).stats
    assert stats == PairStats(samples_seen=18, questions_seen=5, questions_kept=0, pairs=0, dropped_gold_error=1,
                              dropped_unparsed=1, dropped_all_correct=1, dropped_all_wrong=1,
                              dropped_no_distinct_pair=1)  # fmt: skip
    assert sum(v for k, v in stats.as_dict().items() if k.startswith("dropped_")) == stats.questions_seen


def test_unparsed_chains_count_as_wrong_and_can_be_rejected():
    samples = [sample("q", 0, True), sample("q", 1, False, reason="unparsed")]
    (pair,) = build_pairs(samples, band=(0.0, 1.0)).pairs
    assert (pair.chosen_index, pair.rejected_index) == (0, 1)


def test_math_timeouts_are_unknown_never_a_label():
    # A timed-out equivalence check says nothing about the chain (correct answers time out on a loaded machine):
    # it counts neither way in the accuracy and is never a rejected (or chosen) chain.
    timeouts = lambda qid, start: [sample(qid, start + i, False, reason="timeout") for i in range(4)]  # noqa: E731
    samples = [sample("q", i, True) for i in range(3)] + [sample("q", 3, False)] + timeouts("q", 4)
    result = build_pairs(samples, band=(0.25, 0.85), max_pairs=3)
    assert len(result.pairs) == 3 and {p.rejected_index for p in result.pairs} == {3}
    # one right chain and three timeouts: all (known) correct, not a question at 25% accuracy
    only_right = [sample("r", 0, True)] + timeouts("r", 1)
    assert build_pairs(only_right).stats.dropped_all_correct == 1
    stats = build_pairs(samples + only_right + timeouts("t", 0), band=(0.25, 0.85)).stats
    assert (stats.samples_unscored, stats.dropped_unscored, stats.questions_seen) == (12, 1, 3)


def test_at_most_max_pairs_and_distinct_chains_first():
    result = build_pairs(question("q", 16), max_pairs=3)
    assert len(result.pairs) == 3
    assert len({p.chosen for p in result.pairs}) == 3 and len({p.rejected for p in result.pairs}) == 3
    assert len(build_pairs(question("q", 16), max_pairs=5).pairs) == 5


def test_reuses_chains_when_few_are_distinct():
    samples = [sample("q", 0, True), sample("q", 1, False), sample("q", 2, False)]
    result = build_pairs(samples, band=(0.0, 1.0), max_pairs=3)
    assert sorted(p.rejected_index for p in result.pairs) == [1, 2]  # only two distinct pairs exist
    assert all(p.chosen_index == 0 for p in result.pairs)


def test_never_pairs_equal_scores():
    # Graded metrics: a "correct" chain must still score strictly higher than the rejected one.
    samples = [ScoredSample("q", 0, "a", 0.9, True), ScoredSample("q", 1, "b", 0.9, False)]
    assert build_pairs(samples, band=(0.0, 1.0)).stats.dropped_no_distinct_pair == 1


def test_duplicate_texts_do_not_make_duplicate_pairs():
    samples = [sample("q", i, True, "same right") for i in range(3)] + [sample("q", 3 + i, False, "same wrong") for i in range(3)]
    assert len(build_pairs(samples, band=(0.0, 1.0)).pairs) == 1


def test_truncation_keeps_original_spacing_and_drops_pairs_identical_after_it():
    assert truncate("one  two\nthree four", 3) == "one  two\nthree"
    assert truncate("short text", 90) == "short text"
    assert truncate("  lead ing", 1) == "  lead"
    shared = " ".join(f"w{i}" for i in range(100))
    samples = [sample("q", 0, True, shared + " ### Answer: A"), sample("q", 1, False, shared + " ### Answer: B")]
    assert build_pairs(samples, band=(0.0, 1.0)).pairs  # distinct in full
    result = build_pairs(samples, band=(0.0, 1.0), truncate_words=90)
    assert result.pairs == [] and result.stats.dropped_no_distinct_pair == 1  # identical in their first 90 words


def test_seeded_and_order_independent():
    samples = question("a", 10) + question("b", 20)
    first = build_pairs(samples, seed=7).pairs
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    assert build_pairs(shuffled, seed=7).pairs == first
    assert build_pairs(samples, seed=8).pairs != first
    # A question's pairs do not depend on which other questions are present.
    assert [p for p in first if p.question_id == "a"] == build_pairs(question("a", 10), seed=7).pairs


def test_from_record_and_preference_row():
    row = RolloutRow(question_id="q", sample_index=3, temperature=1.0, text="t", value=1.0, correct=True)
    assert ScoredSample.from_record(row) == ScoredSample("q", 3, "t", 1.0, True)
    assert ScoredSample.from_record(row.to_record() | {"answer": "x"}) == ScoredSample("q", 3, "t", 1.0, True)
    (pair,) = build_pairs([sample("q", 0, True), sample("q", 1, False)], band=(0.0, 1.0)).pairs
    preference = pair.to_preference_row("What shape?", ImageRef(path="img.png"), [{"role": "user", "content": []}],
                                        round=1, sampling={"temperature": 1.0})  # fmt: skip
    assert isinstance(preference, PreferenceRow)
    assert (preference.chosen, preference.rejected, preference.chosen_score, preference.round) == (
        "q chain 0", "q chain 1", 1.0, 1)  # fmt: skip


def test_sampled_tokens_travel_with_a_pair_and_must_align():
    sampled = SampledTokens(token_ids=[5, 9, 2], logprobs=[-0.5, -1.25, -0.25], prompt_tokens=40)
    row = PreferenceRow(question_id="q", question="?", image=ImageRef(path="i.png"), chosen="a", rejected="b",
                        chosen_score=1.0, rejected_score=0.0, chosen_sampled=sampled)
    again = PreferenceRow.model_validate_json(row.model_dump_json())
    assert again.chosen_sampled == sampled and again.rejected_sampled is None
    with pytest.raises(ValueError, match="3 token ids but 2 log-probs"):
        SampledTokens(token_ids=[5, 9, 2], logprobs=[-0.5, -1.25])


@pytest.mark.parametrize(
    "kwargs", [{"band": (0.9, 0.1)}, {"band": (-0.1, 0.5)}, {"max_pairs": 0}, {"truncate_words": 0}]
)
def test_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        build_pairs([], **kwargs)


# --- properties -------------------------------------------------------------------------------------------

scored = st.builds(
    ScoredSample,
    question_id=st.sampled_from(["q1", "q2", "q3", "q4"]),
    sample_index=st.just(0),
    text=st.sampled_from(["a", "b", "c", "d", "a b c", "a b d", "x y z w"]),  # few texts: many duplicates
    value=st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]),
    correct=st.booleans(),
    reason=st.sampled_from([None, None, "unparsed"]),
)
bands = st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted).map(tuple)


@settings(max_examples=300)
@given(st.lists(scored, max_size=60), bands, st.integers(1, 4), st.sampled_from([None, 1, 2]), st.integers(0, 3))
def test_pair_properties(samples, band, max_pairs, truncate_words, seed):
    samples = [replace(s, sample_index=i) for i, s in enumerate(samples)]  # unique, as the rollout stage makes them
    result = build_pairs(samples, band=band, max_pairs=max_pairs, truncate_words=truncate_words, seed=seed)
    by_index = {s.sample_index: s for s in samples}
    per_question: dict[str, int] = {}
    for pair in result.pairs:
        chosen, rejected = by_index[pair.chosen_index], by_index[pair.rejected_index]
        assert chosen.question_id == rejected.question_id == pair.question_id
        assert (pair.chosen, pair.rejected) == (truncate(chosen.text, truncate_words), truncate(rejected.text, truncate_words))
        assert chosen.correct and not rejected.correct  # never two corrects or two incorrects
        assert pair.chosen != pair.rejected  # never identical texts
        assert pair.chosen_score > pair.rejected_score  # never equal scores
        assert truncate_words is None or len(pair.chosen.split()) <= truncate_words
        group = [s for s in samples if s.question_id == pair.question_id]
        accuracy = sum(s.correct for s in group) / len(group)
        assert band[0] <= accuracy <= band[1]
        per_question[pair.question_id] = per_question.get(pair.question_id, 0) + 1
    assert all(n <= max_pairs for n in per_question.values())
    assert len({(p.question_id, p.chosen, p.rejected) for p in result.pairs}) == len(result.pairs)
    stats = result.stats
    dropped = sum(v for k, v in stats.as_dict().items() if k.startswith("dropped_"))
    assert stats.questions_seen == len({s.question_id for s in samples}) == stats.questions_kept + dropped
    assert stats.questions_kept == len(per_question) and stats.pairs == len(result.pairs)


def test_shared_prefix_pairs_part_where_a_step_goes_wrong():
    right = "red 3 blue 7 . 3 x 7 = 21 . 21 + 5 = 26"
    slip_late = "red 3 blue 7 . 3 x 7 = 21 . 21 + 5 = 25"  # parts at its 14th word
    slip_early = "red 3 blue 7 . 3 x 7 = 24 . 24 + 5 = 29"  # parts at its 10th word
    samples = [sample("q", 0, True, right), sample("q", 1, False, slip_early), sample("q", 2, False, slip_late)]
    for seed in range(20):  # whatever the shuffle, the later parting comes first
        (pair,) = build_pairs(samples, band=(0.0, 1.0), max_pairs=1, seed=seed, prefer_shared_prefix=True).pairs
        assert pair.rejected == slip_late
    (cut,) = build_pairs(samples, band=(0.0, 1.0), max_pairs=1, prefer_shared_prefix=True, cut_after_parting=1).pairs
    assert (cut.chosen, cut.rejected) == (right, slip_late)  # the parting word is the last: nothing to cut
    (early,) = [p for p in build_pairs(samples, band=(0.0, 1.0), max_pairs=2, cut_after_parting=2).pairs
                if p.rejected_index == 1]
    assert (early.chosen, early.rejected) == ("red 3 blue 7 . 3 x 7 = 21 .", "red 3 blue 7 . 3 x 7 = 24 .")
    assert early.chosen_truncated and early.rejected_truncated  # cut chains are trained without an end of turn
    with pytest.raises(ValueError, match="cut_after_parting"):
        build_pairs(samples, cut_after_parting=0)


def test_a_right_answer_reached_through_a_false_step_is_never_chosen():
    lucky = "6 x 6 = 48. 48 + 3 = 39. So the answer is 39."  # 39 is right, 6 x 6 = 48 is not
    sound = "6 x 6 = 36. 36 + 3 = 39. So the answer is 39."
    wrong = "6 x 6 = 36. 36 + 3 = 38. So the answer is 38."
    samples = [sample("q", 0, True, lucky), sample("q", 1, True, sound), sample("q", 2, False, wrong)]
    result = build_pairs(samples, band=(0.0, 1.0), max_pairs=3, consistent_chosen=True)
    assert {p.chosen for p in result.pairs} == {sound} and result.stats.chosen_refused == 1
    assert {p.chosen for p in build_pairs(samples, band=(0.0, 1.0), max_pairs=3).pairs} == {lucky, sound}


def test_a_chain_the_step_checker_calls_lucky_is_never_chosen_when_asked():
    # a yes/no guessed right through a misread: every written equation is true, so consistent_chosen keeps it
    lucky = ScoredSample("q", 0, "red 9 blue 7. 9 x 7 = 63. 63 is greater than 10.", 1.0, True, step_check=LUCKY)
    sound = ScoredSample("q", 1, "red 3 blue 7. 3 x 7 = 21. 21 is greater than 10.", 1.0, True, step_check=CORRECT)
    wrong = ScoredSample("q", 2, "red 3 blue 7. 3 x 7 = 21. 21 is not greater than 10.", 0.0, False,
                         step_check=WRONG_CONCLUSION)
    samples = [lucky, sound, wrong]
    result = build_pairs(samples, band=(0.0, 1.0), max_pairs=3, consistent_chosen=True, sound_chosen=True)
    assert [(p.chosen, p.rejected) for p in result.pairs] == [(sound.text, wrong.text)]
    assert result.stats.chosen_refused == 1
    assert {p.chosen for p in build_pairs(samples, band=(0.0, 1.0), max_pairs=3, consistent_chosen=True).pairs} == \
        {lucky.text, sound.text}
    # no checker for the source (step_check None): nothing is refused
    unchecked = [replace(x, step_check=None) for x in samples]
    assert len(build_pairs(unchecked, band=(0.0, 1.0), max_pairs=3, sound_chosen=True).pairs) == 2
    assert ScoredSample.from_record({"question_id": "q", "sample_index": 0, "text": "t", "value": 1.0,
                                     "correct": True, "step_check": ""}).step_check is None


def test_a_misread_is_never_rejected_when_asked_so_pairs_part_at_a_step():
    sound = ScoredSample("q", 0, "red 3 blue 7. 3 x 7 = 21. So the answer is 21.", 1.0, True, step_check=CORRECT)
    misread = ScoredSample("q", 1, "red 3 blue 1. 3 x 1 = 3. So the answer is 3.", 0.0, False, step_check=MISREAD)
    slip = ScoredSample("q", 2, "red 3 blue 7. 3 x 7 = 24. So the answer is 24.", 0.0, False,
                        step_check=ARITHMETIC_SLIP)
    other_misread = replace(misread, sample_index=3, text="red 8 blue 7. 8 x 7 = 56. So the answer is 56.")
    samples = [sound, misread, slip, other_misread]
    result = build_pairs(samples, band=(0.0, 1.0), max_pairs=3, steps_rejected=True)
    assert [(p.chosen, p.rejected) for p in result.pairs] == [(sound.text, slip.text)]
    assert (result.stats.rejected_refused, result.stats.chosen_refused) == (2, 0)
    assert {p.rejected for p in build_pairs(samples, band=(0.0, 1.0), max_pairs=3).pairs} == \
        {misread.text, slip.text, other_misread.text}
    # a question whose only wrong chains are misreads gives no pair, and says why
    only_misreads = build_pairs([sound, misread], band=(0.0, 1.0), steps_rejected=True)
    assert only_misreads.pairs == [] and only_misreads.stats.dropped_no_distinct_pair == 1
    # no checker for the source: nothing is refused
    unchecked = [replace(x, step_check=None) for x in samples]
    assert len(build_pairs(unchecked, band=(0.0, 1.0), max_pairs=3, steps_rejected=True).pairs) == 3


def test_rejected_classes_count_what_the_pairs_teach_against():
    right = ScoredSample("q", 0, "3 x 7 = 21. 21 is option B.", 1.0, True, step_check=CORRECT)
    slip = ScoredSample("q", 1, "3 x 7 = 24. 24 is option C.", 0.0, False, step_check=ARITHMETIC_SLIP)
    letter = ScoredSample("q", 2, "3 x 7 = 21. 21 is option A.", 0.0, False, step_check=WRONG_CONCLUSION)
    other_letter = replace(letter, sample_index=3, text="3 x 7 = 21. 21 is option D.")
    unchecked = ScoredSample("p", 0, "5", 0.0, False)  # a source without a step checker
    pairs = build_pairs([right, slip, letter, other_letter], band=(0.0, 1.0), max_pairs=3).pairs
    extra = replace(pairs[0], question_id="p", rejected_index=0)
    checks = {(s.question_id, s.sample_index): s.step_check for s in (right, slip, letter, other_letter, unchecked)}
    # three pairs, one per wrong chain: two part at the letter, one at the sum; the unchecked one is left out
    assert rejected_classes(pairs + [extra], checks) == {WRONG_CONCLUSION: 2, ARITHMETIC_SLIP: 1}
    assert list(rejected_classes(pairs, checks)) == [WRONG_CONCLUSION, ARITHMETIC_SLIP]  # most first
    assert rejected_classes([], checks) == {}


def test_a_chain_wrong_only_in_its_conclusion_is_not_rejected_when_asked():
    right = ScoredSample("q", 0, "3 x 7 = 21. 21 is option B.", 1.0, True, step_check=CORRECT)
    slip = ScoredSample("q", 1, "3 x 7 = 24. 24 is option C.", 0.0, False, step_check=ARITHMETIC_SLIP)
    letter = ScoredSample("q", 2, "3 x 7 = 21. 21 is option A.", 0.0, False, step_check=WRONG_CONCLUSION)
    misread = ScoredSample("q", 3, "3 x 1 = 3. 3 is option D.", 0.0, False, step_check=MISREAD)
    samples = [right, slip, letter, misread]
    result = build_pairs(samples, band=(0.0, 1.0), max_pairs=3, conclusions_rejected=False)
    assert sorted(p.rejected for p in result.pairs) == sorted([slip.text, misread.text])
    assert result.stats.rejected_refused == 1
    both = build_pairs(samples, band=(0.0, 1.0), max_pairs=3, conclusions_rejected=False, steps_rejected=True)
    assert [p.rejected for p in both.pairs] == [slip.text] and both.stats.rejected_refused == 2
    # the default rejects it; a question whose only wrong chains are letter slips then gives no pair
    assert letter.text in {p.rejected for p in build_pairs(samples, band=(0.0, 1.0), max_pairs=3).pairs}
    assert build_pairs([right, letter], band=(0.0, 1.0), conclusions_rejected=False).stats.dropped_no_distinct_pair == 1


def test_only_pairs_that_part_on_a_likely_token_when_asked():
    # Token ids as sampled, with each token's log-prob under the sampling policy. The chains part at token 2.
    right = ScoredSample("q", 0, "3 x 7 = 21", 1.0, True, token_ids=(5, 6, 7, 2), token_logprobs=(-0.1, -0.2, -0.9, -0.01))
    slip = ScoredSample("q", 1, "3 x 7 = 29", 0.0, False, token_ids=(5, 6, 8, 2), token_logprobs=(-0.1, -0.2, -3.5, -0.01))
    mode = ScoredSample("q", 2, "3 x 7 = 24", 0.0, False, token_ids=(5, 6, 9, 2), token_logprobs=(-0.1, -0.2, -0.6, -0.01))
    samples = [right, slip, mode]
    kept = build_pairs(samples, band=(0.0, 1.0), max_pairs=3, parting_logp_margin=0.0).pairs
    assert [p.rejected for p in kept] == ["3 x 7 = 24"]  # -0.6 >= -0.9: the policy preferred the wrong token
    # A margin of 2.6 nats admits the slip: -3.5 >= -0.9 - 2.6
    assert len(build_pairs(samples, band=(0.0, 1.0), max_pairs=3, parting_logp_margin=2.6).pairs) == 2
    assert len(build_pairs(samples, band=(0.0, 1.0), max_pairs=3, parting_logp_margin=2.5).pairs) == 1
    assert len(build_pairs(samples, band=(0.0, 1.0), max_pairs=3).pairs) == 2  # off: both wrong chains paired
    with pytest.raises(ValueError, match="log-probs"):  # chains without sampled log-probs cannot be judged
        build_pairs([sample("q", 0, True), sample("q", 1, False)], parting_logp_margin=0.0)
    with pytest.raises(ValueError, match="parting_logp_margin"):
        build_pairs(samples, parting_logp_margin=-1.0)
    record = {"question_id": "q", "sample_index": 1, "text": "x", "value": 0.0, "correct": False,
              "token_ids": [5, 6], "token_logprobs": [-0.1, -0.2]}
    assert ScoredSample.from_record(record).token_ids == (5, 6)
