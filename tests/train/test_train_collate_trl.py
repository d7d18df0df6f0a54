"""Collation, log-probs and losses on the real tiny VLMs; first-batch DPO equality with TRL's DPOTrainer."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from reasoner_ray.train.collate import IGNORE_INDEX, VLMEncoder, collate_pairs, collate_sft, fit_filter
from reasoner_ray.train.data import preference_examples, sft_examples
from reasoner_ray.train.logprobs import pair_logps
from reasoner_ray.train.losses import sft_loss


@pytest.fixture(scope="module", params=["tiny_qwen2_vl", "tiny_qwen2_5_vl", "tiny_qwen3_vl", "tiny_llava",
                                                      "tiny_llava_next", "tiny_gemma3", "tiny_idefics3",
                                                      "tiny_internvl"])
def model_and_encoder(request):
    from reasoner_ray.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(request.getfixturevalue(request.param))
    return model, VLMEncoder(processor)


def test_sft_batch_reaches_model_and_matches_labels_loss(model_and_encoder):
    from conftest import make_vqa_rows

    model, encoder = model_and_encoder
    examples = sft_examples(make_vqa_rows(3), include_direct=True)
    batch = collate_sft(encoder, examples, max_length=512)
    prompts = encoder.encode_prompts(examples)
    assert set(prompts) - {"input_ids", "attention_mask"} <= set(batch)  # every processor output goes to the model
    # loss only on assistant tokens: the labelled text is the response and the end-of-turn marker
    first = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]
    assert encoder.processor.tokenizer.decode(first).startswith(examples[0]["response"])
    labels = batch.pop("labels")
    out = model(**batch, labels=labels)
    assert float(sft_loss(out.logits, labels)) == pytest.approx(float(out.loss), rel=1e-6)  # fp32 summation order
    # the training step's loss runs the LM head only where a label follows: the same loss
    from reasoner_ray.core.config import build_config
    from reasoner_ray.train.steps import RECIPES

    step_loss, _ = RECIPES["sft"].loss(model, {**batch, "labels": labels}, encoder, build_config({}, []))
    assert float(step_loss) == pytest.approx(float(out.loss), rel=1e-6)


def test_prompt_too_long_is_filtered_and_counted(model_and_encoder):
    from conftest import make_vqa_rows

    _, encoder = model_and_encoder
    examples = sft_examples(make_vqa_rows(2), include_direct=False)
    examples[1]["messages"][0]["content"][1]["text"] += " word" * 400
    counts: Counter = Counter()
    kept = fit_filter(encoder, examples, max_length=200, counts=counts)
    assert [e["id"] for e in kept] == ["q0:cot"] and counts["prompt_too_long"] == 1


def test_shared_and_packed_prompts_equal_full_sequences(model_and_encoder):
    from conftest import make_pairs
    from reasoner_ray.core.config import build_config
    from reasoner_ray.train.steps import dpo_pair_layout, has_sliding_window

    model, encoder = model_and_encoder
    if has_sliding_window(model.config):  # Gemma 3: DPO and the reference pass run full sequences instead
        assert dpo_pair_layout(build_config({}, []), model) == "full"
        return
    # Responses of different lengths (make_pairs' rejected ones differ), so the padded layouts have pads.
    batch = collate_pairs(encoder, preference_examples(make_pairs(3)), max_length=512)
    assert int(batch["completion_mask"].sum()) < batch["completion_mask"].numel()
    with torch.no_grad():
        full = pair_logps(model, batch, encoder.pad_id, "full")
        for layout in ("shared", "packed"):
            got = pair_logps(model, batch, encoder.pad_id, layout)
            for a, b in zip(got, full):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5, msg=lambda m: f"{layout}: {m}")


def test_packed_gradients_equal_full_sequences(model_and_encoder):
    """Gradients reach every weight through the packed rows (the prompt pass's cache included) as through TRL's."""
    from conftest import make_pairs
    from reasoner_ray.train.steps import has_sliding_window

    model, encoder = model_and_encoder
    if has_sliding_window(model.config):
        return  # never packed (checked above)
    batch = collate_pairs(encoder, preference_examples(make_pairs(3)), max_length=512)
    grads = {}
    for layout in ("full", "packed"):
        model.zero_grad(set_to_none=True)
        chosen, rejected = pair_logps(model, batch, encoder.pad_id, layout)
        (chosen.sum() - 2 * rejected.sum()).backward()
        grads[layout] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert grads["packed"].keys() == grads["full"].keys() and any("vision" in n or "visual" in n for n in grads["full"])
    for name, g in grads["full"].items():
        torch.testing.assert_close(grads["packed"][name], g, atol=1e-4, rtol=1e-3, msg=lambda m: f"{name}: {m}")


def test_response_logps_equal_the_pair_path(model_and_encoder):
    """The verifier's per-chain log-probs (one row per response, images in row order) equal the DPO path's."""
    from conftest import make_pairs

    from reasoner_ray.train.reference import response_logps

    model, encoder = model_and_encoder
    examples = preference_examples(make_pairs(3))  # three questions with different images
    batch = collate_pairs(encoder, examples, max_length=512)
    with torch.no_grad():
        chosen, rejected = pair_logps(model, batch, encoder.pad_id, "full")
    items = [(ex, ex[key]) for ex in examples for key in ("chosen", "rejected")]
    got = response_logps(model, encoder, items, max_length=512, batch_size=4)  # batches cut across questions
    want = [v for pair in zip(chosen.tolist(), rejected.tolist()) for v in pair]
    torch.testing.assert_close(torch.tensor([sum(lps) for _, lps in got]), torch.tensor(want), atol=1e-4, rtol=1e-5)
    assert all(len(ids) == len(lps) > 0 for ids, lps in got)


def _perturbed_copy(path: str, out) -> str:
    """A reference model that differs from the policy, so rewards are not all zero."""
    from reasoner_ray.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(path)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


@pytest.mark.slow  # TRL's trainer plus three model loads: about 30 s on a shared 2-core box
@pytest.mark.ray  # the reference pass runs as Ray tasks
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "llava_next", "gemma3",
                                    "idefics3", "internvl"])
def test_first_batch_equals_trl_dpo_trainer(family, request, tmp_path, ray_local):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from conftest import make_pairs
    from reasoner_ray.core.config import build_config
    from reasoner_ray.core.prompts import assistant_message
    from reasoner_ray.data.images import open_image
    from reasoner_ray.models.loading import load_model_and_processor
    from reasoner_ray.train.data import read_rows, write_rows
    from reasoner_ray.train.reference import compute_reference_logps
    from reasoner_ray.train.steps import RECIPES
    from reasoner_ray.core.rows import PreferenceRow

    model_path = request.getfixturevalue(f"tiny_{family}")
    pairs = make_pairs(4)
    ref_path = _perturbed_copy(model_path, tmp_path / "ref")
    policy, processor = load_model_and_processor(model_path)
    ref_model, _ = load_model_and_processor(ref_path)

    # TRL: live reference model, its own collator, sigmoid loss, beta 0.1; the first batch holds all 4 pairs.
    data = Dataset.from_list([{"images": [open_image(p.image)], "prompt": p.messages,
                               "chosen": [assistant_message(p.chosen)], "rejected": [assistant_message(p.rejected)]}
                              for p in pairs])
    args = DPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, beta=0.1, loss_type=["sigmoid"],
                     per_device_train_batch_size=4, remove_unused_columns=False, report_to=[], max_length=None)
    trainer = DPOTrainer(model=policy, ref_model=ref_model, args=args, train_dataset=data, processing_class=processor)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()  # TRL files metrics under "train" only in training mode
    trl_loss = float(trainer.compute_loss(trainer.model, batch))
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    # This project: reference log-probs precomputed into the rows, then the DPO step on the policy.
    write_rows(pairs, tmp_path / "pairs.jsonl")
    # TRL trains on the whole rendered turn (Qwen: "<|im_end|>\n"): our layout without reused sampled log-probs.
    config = build_config({}, ["dpo.beta=0.1", "dpo.loss=sigmoid", "dpo.reuse_sampled_logps=false"])
    compute_reference_logps(config, ref_path, str(tmp_path / "pairs.jsonl"), str(tmp_path / "pairs_ref.jsonl"))
    rows = read_rows(tmp_path / "pairs_ref.jsonl", PreferenceRow)
    encoder = RECIPES["dpo"].encoder(processor, config)
    ours = RECIPES["dpo"].collate(encoder, preference_examples(rows), config.train.max_length)
    loss, metrics = RECIPES["dpo"].loss(trainer.model, ours, encoder, config)

    assert abs(trl_loss - torch.log(torch.tensor(2.0)).item()) > 1e-3  # a real test: policy != reference
    assert float(loss) == pytest.approx(trl_loss, abs=1e-5)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected"):
        # summed log-probs of ~250 tokens: float32 sums agree to ~1e-7 relative, not to 1e-5 absolute
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=1e-6, abs=1e-5), key


def test_a_chain_cut_for_the_loss_gets_no_end_of_turn(tiny_qwen2_vl):
    """pairs.truncate_words cuts chains mid-sentence: the cut text must be trained on as it is, not followed by
    the end-of-turn token (DPO would teach the model to stop there); a whole chain keeps its end of turn."""
    from conftest import make_vqa_rows
    from transformers import AutoProcessor

    from reasoner_ray.core.pairs import ScoredSample, build_pairs
    from reasoner_ray.core.prompts import prompt_messages

    encoder = VLMEncoder(AutoProcessor.from_pretrained(tiny_qwen2_vl))
    tok = encoder.processor.tokenizer
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    row = make_vqa_rows(1)[0]
    long_right = " ".join(["the shape has a long outline"] * 30) + f"\n### Answer: {row.answers[0]}"
    short_wrong = "It is small.\n### Answer: none"
    samples = [ScoredSample(row.id, 0, long_right, 1.0, True), ScoredSample(row.id, 1, short_wrong, 0.0, False)]
    (pair,) = build_pairs(samples, band=(0.0, 1.0), truncate_words=90).pairs
    pref = pair.to_preference_row(row.question, row.image, prompt_messages(row, "cot"))
    assert (pref.chosen_truncated, pref.rejected_truncated) == (True, False)
    chosen, rejected = collate_pairs(encoder, preference_examples([pref]), max_length=1024)["completions"]
    assert end_of_turn not in chosen and tok.decode(chosen) == pair.chosen
    assert end_of_turn in rejected and tok.decode(rejected).startswith(short_wrong)
    # The encoder for sampled reference log-probs ends a whole chain at its end-of-turn token, as vLLM samples it;
    # the template's newline after it is left out.
    assert rejected[-2:] == [end_of_turn, tok.convert_tokens_to_ids("Ċ")]
    cut_tail = VLMEncoder(encoder.processor, turn_tail=False)
    chosen_cut, rejected_cut = collate_pairs(cut_tail, preference_examples([pref]), max_length=1024)["completions"]
    assert chosen_cut == chosen and rejected_cut == rejected[:-1]
