"""The pairs stage's preference rows: a chain the engine cut at max_tokens is trained without an end of turn."""

from __future__ import annotations

from reasoner_ray.core.config import build_config
from reasoner_ray.core.pairs import Pair
from reasoner_ray.core.rows import ImageRef, VQARow
from reasoner_ray.pipeline.stages.pairs import preference_rows


def test_a_chain_cut_at_max_tokens_is_marked_truncated():
    config = build_config({})
    row = VQARow(id="q", image=ImageRef(data=b"png"), question="What is it?", answer="circle", answer_type="open",
                 source="t")
    records = [{"question_id": "q", "sample_index": 0, "text": "It is a circle.\n### Answer: circle", "temperature": 1.0,
                "finish_reason": "stop"},
               {"question_id": "q", "sample_index": 1, "text": "The shape has four equal sides and", "temperature": 1.0,
                "finish_reason": "length"},  # cut by rollout.max_tokens: it never ended its turn
               {"question_id": "q", "sample_index": 2, "text": "It is red.\n### Answer: red", "temperature": 1.0,
                "finish_reason": "stop"}]
    pairs = [Pair("q", records[0]["text"], records[1]["text"], 1.0, 0.0, 0, 1),
             Pair("q", records[0]["text"], records[2]["text"], 1.0, 0.0, 0, 2)]
    cut, whole = preference_rows(config, pairs, records, {"q": row}, 1, "sft-model")
    assert (cut.chosen_truncated, cut.rejected_truncated) == (False, True)
    assert (whole.chosen_truncated, whole.rejected_truncated) == (False, False)
    assert cut.sampling["model"] == "sft-model"
