"""The separate verifier's pairs (pure, no engine): whole chains as V-STaR trains (`verifier.whole_chains`), or the
round's aimed pairs, cut a few words after the step where the wrong chain parts."""

from __future__ import annotations

from reasoner_ray.core.config import build_config
from reasoner_ray.core.pairs import ScoredSample, build_pairs
from reasoner_ray.pipeline.stages.verifier import verifier_pair_options

RIGHT = "Red is 3 and blue is 4. 3 + 4 = 7. 7 x 2 = 14. So the answer is 14.\n### Answer: 14"
WRONG = [f"Red is 3 and blue is 4. 3 + 4 = {s}. {s} x 2 = {2 * s}. So the answer is {2 * s}.\n### Answer: {2 * s}"
         for s in (6, 8, 9)]


def _pairs(whole: bool):
    config = build_config({"pairs": {"prefer_shared_prefix": True, "cut_after_parting": 1},
                           "verifier": {"whole_chains": whole, "max_pairs_per_question": 8}})
    # 1 right chain in 4: outside the rounds' accuracy band, which the verifier does not use
    samples = [ScoredSample("q", i, text, float(i == 0), i == 0) for i, text in enumerate([RIGHT, *WRONG])]
    return build_pairs(samples, seed=0, **verifier_pair_options(config)).pairs


def test_whole_chains_pair_every_right_chain_with_every_wrong_one_uncut():
    pairs = _pairs(whole=True)
    assert {p.chosen for p in pairs} == {RIGHT} and sorted(p.rejected for p in pairs) == WRONG


def test_aimed_pairs_are_cut_one_word_after_the_parting_step():
    pairs = _pairs(whole=False)
    # both sides end one word after "3 + 4 =", where each wrong chain's step goes wrong
    assert {p.chosen for p in pairs} == {"Red is 3 and blue is 4. 3 + 4 = 7."}
    assert sorted(p.rejected for p in pairs) == [f"Red is 3 and blue is 4. 3 + 4 = {s}." for s in (6, 8, 9)]
