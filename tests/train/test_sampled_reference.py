"""Reference log-probs taken from a rollout engine's sampled tokens equal the reference pass's on the same
tokens; pairs that do not qualify (another sampler, tokens that differ, a prompt of another length) go through
the pass, and every pair is counted once."""

from __future__ import annotations

import pytest

from conftest import make_vqa_rows
from reasoner_ray.core.config import build_config
from reasoner_ray.core.prompts import prompt_messages
from reasoner_ray.core.rows import PreferenceRow, SampledTokens
from reasoner_ray.train.data import read_rows, write_rows
from reasoner_ray.train.reference import compute_reference_logps

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]


def _sample_pairs(ray, model_path: str, n: int) -> list[PreferenceRow]:
    from reasoner_ray.engines.vllm_generator import EngineSettings, VLLMGenerator

    rows = make_vqa_rows(n)
    engine = ray.remote(num_cpus=1)(VLLMGenerator).remote(EngineSettings(model_path=model_path, max_model_len=512,
                                                                         kv_cache_gib=1))
    try:
        # The rollouts' own settings (temperature 1.2, top-p < 1): log-probs after temperature or top-p would not
        # equal the pass's
        samples = ray.get(engine.generate.remote(rows, "cot", n=2, temperature=1.2, top_p=0.9, max_tokens=3, seed=0,
                                                 logprobs=True))
    finally:
        ray.get(engine.close.remote())
        ray.kill(engine)
    side = lambda s: SampledTokens(token_ids=list(s.token_ids), logprobs=list(s.token_logprobs),  # noqa: E731
                                   prompt_tokens=s.prompt_tokens, prompt_digest=s.prompt_digest)
    return [PreferenceRow(question_id=row.id, question=row.question, image=row.image,
                          messages=prompt_messages(row, "cot"), chosen=a.text, rejected=b.text, chosen_score=1.0,
                          rejected_score=0.0, chosen_truncated=a.finish_reason == "length",
                          rejected_truncated=b.finish_reason == "length", chosen_sampled=side(a),
                          rejected_sampled=side(b), sampling={"model": model_path})
            for row, (a, b) in zip(rows, samples)]


def test_sampled_log_probs_equal_the_reference_pass(tiny_qwen2_vl, tmp_path, ray_local):
    # The random tiny model samples lone UTF-8 bytes that its text does not keep (such a chain goes through the
    # pass): short chains, so that some pairs keep every token.
    pairs = _sample_pairs(ray_local, tiny_qwen2_vl, 12)
    assert all(len(p.chosen_sampled.logprobs) == len(p.chosen_sampled.token_ids) > 0 for p in pairs)
    config = build_config({}, ["train.num_workers=1"])

    def reference(rows, name):
        write_rows(rows, tmp_path / f"{name}.jsonl")
        counts = compute_reference_logps(config, tiny_qwen2_vl, str(tmp_path / f"{name}.jsonl"),
                                         str(tmp_path / f"{name}_ref.jsonl"))
        return counts, read_rows(tmp_path / f"{name}_ref.jsonl", PreferenceRow)

    elsewhere = [p.model_copy(update={"sampling": {"model": str(tmp_path / "another-model")}}) for p in pairs]
    pass_counts, computed = reference(elsewhere, "elsewhere")
    assert pass_counts["from_pass"] == len(pairs) and pass_counts["from_rollouts"] == 0

    tampered = pairs[0].model_copy(update={"chosen_sampled": pairs[0].chosen_sampled.model_copy(
        update={"token_ids": [t + 1 for t in pairs[0].chosen_sampled.token_ids]})})
    other_prompt = pairs[1].model_copy(update={"rejected_sampled": pairs[1].rejected_sampled.model_copy(
        update={"prompt_tokens": pairs[1].rejected_sampled.prompt_tokens + 1})})
    # as many prompt tokens, other ones: a length check alone took these as the reference's own
    other_ids = pairs[2].model_copy(update={"chosen_sampled": pairs[2].chosen_sampled.model_copy(
        update={"prompt_digest": "0" * 16})})
    assert all(p.chosen_sampled.prompt_digest for p in pairs)
    counts, reused = reference([tampered, other_prompt, other_ids, *pairs[3:]], "sampled")
    assert counts["written"] == len(pairs)
    assert counts["from_pass"] >= 3 and counts["from_rollouts"] >= 2, counts
    assert counts["from_pass"] + counts["from_rollouts"] == len(pairs)
    for ours, passed in zip(reused, computed):
        # float32 on both sides; per-token differences of the two forward implementations sum to about 1e-5
        assert ours.ref_chosen_logp == pytest.approx(passed.ref_chosen_logp, abs=1e-4)
        assert ours.ref_rejected_logp == pytest.approx(passed.ref_rejected_logp, abs=1e-4)
    assert abs(reused[2].ref_chosen_logp) > 1.0  # real numbers, not zeros
