"""The exported SFT model loads in vLLM, and vLLM's log-probs of a fixed text agree with transformers'."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]

FIXED_TEXT = "<|im_start|>user\nWhat color is the shape?<|im_end|>\n<|im_start|>assistant\nThe shape is blue.<|im_end|>\n"


def test_export_prompt_logprobs_agree_with_transformers(sft_zero2_run):
    import torch

    from reasoner_ray.engines.vllm_env import apply_vllm_env
    from reasoner_ray.models.loading import load_model_and_processor

    model_dir = sft_zero2_run.model_dir
    model, processor = load_model_and_processor(model_dir)
    ids = processor.tokenizer(FIXED_TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    hf = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)

    apply_vllm_env(1)
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, max_model_len=256, limit_mm_per_prompt={"image": 0})
    try:
        out = llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
    finally:
        llm.llm_engine.engine_core.shutdown()
    prompt_logprobs = out[0].prompt_logprobs  # first entry is None (no prediction for the first token)
    vllm_lp = torch.tensor([prompt_logprobs[i + 1][tok].logprob for i, tok in enumerate(ids[1:])])
    assert len(vllm_lp) == len(hf) > 10
    torch.testing.assert_close(vllm_lp, hf, atol=2e-3, rtol=0)
