"""vLLM generates with an image from every tiny model family inside a Ray actor, and agrees with transformers."""

import pytest

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.prompts import prompt_messages
from reasoner_ray.data.images import open_image
from reasoner_ray.data.readers import iter_rows

pytestmark = [pytest.mark.ray, pytest.mark.vllm, pytest.mark.slow]


def _hf_greedy(model_path, rows, max_new_tokens):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32).eval()
    token_ids = []
    for row in rows:
        prompt = proc.apply_chat_template(prompt_messages(row, "cot"), add_generation_prompt=True, tokenize=False)
        inputs = proc(images=[open_image(row.image)], text=[prompt], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        token_ids.append(out[0, inputs["input_ids"].shape[1]:].tolist())
    return token_ids


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "llava_next", "gemma3",
                                    "idefics3", "internvl"])
def test_generate_with_image_in_ray_actor(family, request, ray_local):
    from reasoner_ray.engines.vllm_generator import EngineSettings, VLLMGenerator

    model_path = request.getfixturevalue(f"tiny_{family}")
    rows = list(iter_rows(DataSource(format="easy_vqa", split="test", limit=3)))
    engine = ray_local.remote(num_cpus=1)(VLLMGenerator).remote(EngineSettings(model_path=model_path, max_model_len=512, kv_cache_gib=1))
    try:
        sampled = ray_local.get(engine.generate.remote(rows, "cot", n=3, temperature=1.0, max_tokens=12, seed=0))
        greedy = ray_local.get(engine.generate.remote(rows, "cot", n=1, temperature=0.0, max_tokens=6))
        again = ray_local.get(engine.generate.remote(rows, "cot", n=3, temperature=1.0, max_tokens=12, seed=0))
    finally:
        ray_local.get(engine.close.remote())
        ray_local.kill(engine)
    assert [len(s) for s in sampled] == [3, 3, 3]
    # 64x64 pixels, patch 8: 64 features (the Qwen VLs merge 2x2 into 16, Gemma 3 pools 2x2 into 16; LLaVA-NeXT adds
    # its tiles and newlines)
    image_tokens = {"qwen2_vl": 16, "qwen2_5_vl": 16, "qwen3_vl": 16, "llava": 64, "llava_next": 64, "gemma3": 16,
                    "idefics3": 16, "internvl": 16}[family]
    for row_samples in sampled:
        for s in row_samples:
            assert s.prompt_tokens > image_tokens
            assert 1 <= s.completion_tokens <= 12 and s.finish_reason in ("length", "stop")
    assert [[s.text for s in r] for r in sampled] == [[s.text for s in r] for r in again]  # seeded: reproducible
    assert len({s.text for s in sampled[0]}) > 1  # distinct samples per question
    # Same weights, same preprocessing: vLLM's greedy continuation equals transformers'.
    assert [list(r[0].token_ids) for r in greedy] == _hf_greedy(model_path, rows, 6)
