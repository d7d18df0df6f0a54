"""DeepSpeed config, sample and lr schedules, SFT mixture and input files: the pure pieces of a training run."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from reasoner_ray.core.config import TrainConfig
from reasoner_ray.core.prompts import ANSWER_MARKER
from reasoner_ray.core.rows import PreferenceRow, SampledTokens
from reasoner_ray.train.data import RowFileError, read_rows, sft_examples
from reasoner_ray.train.deepspeed_config import deepspeed_config
from reasoner_ray.train.reference import sampled_logps
from reasoner_ray.train.schedule import lr_ratio, micro_slice, sample_order


def test_deepspeed_config_from_typed_config():
    train = TrainConfig(zero_stage=3, offload_optimizer=True, offload_params=True, gradient_accumulation_steps=2,
                        max_grad_norm=0.5, warmup_ratio=0.1)
    ds = deepspeed_config(train, global_batch_size=16, world_size=2, use_gpu=False)
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["gradient_accumulation_steps"] == 2
    assert ds["train_batch_size"] == 16 and ds["gradient_clipping"] == 0.5
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["bf16"]["enabled"] is False  # fp32 on CPU
    # a torch optimizer and lr schedule are passed in: no FusedAdam JIT build, no WarmupCosineLR's two lr-0 steps
    assert "optimizer" not in ds and "scheduler" not in ds
    assert deepspeed_config(train, 16, 2, use_gpu=True)["bf16"]["enabled"] is True
    assert deepspeed_config(train, 16, 2, use_gpu=True, dtype="bfloat16")["bf16"]["enabled"] is True
    # fp32 weights on GPUs stay fp32: the reference pass and the engines load model.dtype
    assert deepspeed_config(train, 16, 2, use_gpu=True, dtype="float32")["bf16"]["enabled"] is False


def test_lr_ratio_warms_up_decays_and_trains_every_step():
    # 10 steps, warmup 0.1 -> 1 warmup step at 1/2; the peak next; cosine over the 9 after the warmup
    ratios = [lr_ratio(k, 10, 0.1) for k in range(10)]
    assert ratios[0] == 0.5 and ratios[1] == 1.0
    assert ratios[2] == pytest.approx(0.5 * (1 + math.cos(math.pi / 9)))
    assert ratios[9] == pytest.approx(0.5 * (1 + math.cos(8 * math.pi / 9))) and ratios[9] > 0
    assert all(a > b for a, b in zip(ratios[1:], ratios[2:]))
    # a round with fewer pairs than a global batch trains one step, at the peak; a short run has no warmup step
    assert lr_ratio(0, 1, 0.03) == 1.0 and [lr_ratio(k, 2, 0.03) for k in range(2)] == [1.0, 0.5]
    # 1,200 steps at 0.03: 36 warmup steps from 1/37 to 36/37, then the peak
    assert [lr_ratio(k, 1200, 0.03) for k in (0, 35, 36)] == [1 / 37, 36 / 37, 1.0]


def test_the_scheduler_scales_each_group_and_steps_once_per_optimizer_step():
    import torch

    from reasoner_ray.train.model_setup import make_scheduler

    weights = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW([{"params": weights[:1], "lr": 1e-3}, {"params": weights[1:], "lr": 1e-5}])
    scheduler = make_scheduler(optimizer, total_steps=4, warmup_ratio=0.25)
    seen = []
    for _ in range(4):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    expected = [lr_ratio(k, 4, 0.25) for k in range(4)]  # 0.5, 1, 0.75, 0.25
    assert seen == [pytest.approx([1e-3 * r, 1e-5 * r]) for r in expected] and expected[0] == 0.5


def test_batch_not_divisible_is_named():
    with pytest.raises(ValueError, match="not divisible by num_workers"):
        deepspeed_config(TrainConfig(gradient_accumulation_steps=3), 16, 2, False)


def test_schedule_covers_each_sample_once_per_epoch_and_partitions_steps():
    order = sample_order(10, epochs=2.0, global_batch=4, seed=0)
    assert len(order) == 20 and sorted(order[:10]) == list(range(10)) and sorted(order[10:]) == list(range(10))
    assert order[:10] != order[10:]  # a fresh permutation per epoch
    assert order == sample_order(10, 2.0, 4, 0)  # a fixed function of its inputs: resume sees the same order
    taken = [i for step in range(5) for m in range(2) for r in range(2)
             for i in micro_slice(order, step, m, r, world=2, micro_batch=1, accumulation=2)]
    assert taken == order


def test_schedule_refuses_zero_steps():
    with pytest.raises(ValueError, match="less than one global batch"):
        sample_order(3, 1.0, 4, 0)


def test_sft_mixture_cot_and_direct():
    from conftest import make_vqa_rows

    rows = make_vqa_rows(4)  # row 3 has no rationale
    counts: Counter = Counter()
    examples = sft_examples(rows, include_direct=True, counts=counts)
    assert [e["id"] for e in examples] == ["q0:cot", "q0:direct", "q1:cot", "q1:direct", "q2:cot", "q2:direct", "q3:direct"]
    assert examples[0]["response"].endswith(f"{ANSWER_MARKER} {rows[0].answers[0]}")
    assert examples[1]["response"] == rows[0].answers[0]
    assert "reason first" in examples[0]["messages"][0]["content"][1]["text"]
    counts = Counter()
    assert len(sft_examples(rows, include_direct=False, counts=counts)) == 3 and counts["no_rationale"] == 1


def test_bad_row_file_names_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"question_id": "a"}\n')
    with pytest.raises(RowFileError, match="rows.jsonl:1: not a PreferenceRow"):
        from reasoner_ray.core.rows import PreferenceRow

        read_rows(path, PreferenceRow)


def test_sft_reads_the_train_split_in_its_own_format_when_distillation_is_off(tmp_path):
    """With distill.enabled=false the job passes data.train.path (None for easy-VQA) to SFT: it must be read as
    data.train (its format), not as project JSONL."""
    import json

    from conftest import make_vqa_rows

    from reasoner_ray.core.config import Config
    from reasoner_ray.data.llava import to_llava_record
    from reasoner_ray.train.sft import sft_rows

    easy = Config.model_validate({"distill": {"enabled": False}, "data": {"train": {"format": "easy_vqa", "limit": 5}}})
    counts: Counter = Counter()
    rows = sft_rows(easy, easy.data.train.path, counts)
    assert [r.id for r in rows] == [f"easy_vqa-train-{i}" for i in range(5)] and counts["rows"] == 5

    src = make_vqa_rows(3)
    recs = [to_llava_record(r.id, r.image.path, f"{r.question}\nGenerate a reason first and then output a short answer.",
                            f"{r.rationale}\n### Answer: {r.answers[0]}", answer_type=r.answer_type)
            for r in src if r.rationale]
    path = tmp_path / "cot.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in recs) + json.dumps(recs[0]) + "\n")  # + a duplicate id
    llava = Config.model_validate({"distill": {"enabled": False}, "data": {"train": {"format": "llava", "path": str(path)}}})
    counts = Counter()
    rows = sft_rows(llava, llava.data.train.path, counts)
    assert [(r.id, r.rationale) for r in rows] == [(r.id, r.rationale) for r in src if r.rationale]
    assert counts["rows"] == 3 and counts["rejected_duplicate_id"] == 1

    # the distilled rows (project schema) are still read as such, whatever data.train is
    distilled = tmp_path / "rows.jsonl"
    distilled.write_text("".join(r.model_dump_json() + "\n" for r in src))
    assert [r.id for r in sft_rows(llava, str(distilled), Counter())] == [r.id for r in src]


def test_lora_keeps_the_configured_vision_and_projector_training(tiny_qwen2_vl, caplog):
    """peft freezes every non-adapter weight; freeze_vision=false (and so sft.vision_lr) must still train the
    vision tower, and the trainable counts must be the ones after the adapter is added."""
    from reasoner_ray.train.model_setup import param_groups, part_of, prepare_model

    train = TrainConfig(lora_rank=4, lora_alpha=8)
    with caplog.at_level("INFO", logger="reasoner_ray.train.model_setup"):
        model, _ = prepare_model(tiny_qwen2_vl, "float32", train, freeze_vision=False, freeze_projector=True)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    vision = {n for n, _ in model.named_parameters() if part_of(n) == "vision"}
    language = {n for n, _ in model.named_parameters() if part_of(n) == "language"}
    projector = {n for n, _ in model.named_parameters() if part_of(n) == "projector"}
    assert vision and vision <= trainable  # trained in full, at the vision lr
    assert not projector & trainable
    assert language & trainable and all("lora_" in n for n in language & trainable)  # only the adapter
    counts = {part: sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and part_of(n) == part)
              for part in ("vision", "projector", "language")}
    assert f"trainable parameters per part: {counts}" in caplog.text  # counted after the adapter, not before
    groups = param_groups(model, lr=1e-4, vision_lr=1e-6, weight_decay=0.0)
    assert [g["lr"] for g in groups] == [1e-4, 1e-6] and sum(p.numel() for p in groups[1]["params"]) == counts["vision"]



def test_the_fused_optimizer_steps_as_torch_adamw_does():
    """The training loop's fused AdamW keeps the parameter groups (vision lr apart) and moves the weights as the
    per-tensor AdamW does: same weights after three steps, to fp32 rounding."""
    import torch

    from reasoner_ray.train.model_setup import make_optimizer

    torch.manual_seed(0)
    fused_model = torch.nn.ModuleDict({"visual": torch.nn.Linear(6, 4), "lm_head": torch.nn.Linear(4, 3)})
    plain_model = torch.nn.ModuleDict({"visual": torch.nn.Linear(6, 4), "lm_head": torch.nn.Linear(4, 3)})
    plain_model.load_state_dict(fused_model.state_dict())
    start = {name: weight.clone() for name, weight in fused_model.state_dict().items()}
    fused = make_optimizer(fused_model, lr=1e-2, vision_lr=1e-3, weight_decay=0.1)
    plain = torch.optim.AdamW([{"params": list(plain_model["lm_head"].parameters()), "lr": 1e-2, "weight_decay": 0.1},
                               {"params": list(plain_model["visual"].parameters()), "lr": 1e-3, "weight_decay": 0.1}],
                              foreach=False)
    assert fused.defaults["fused"] and [g["lr"] for g in fused.param_groups] == [1e-2, 1e-3]
    x = torch.randn(5, 6)
    for _ in range(3):
        for model, opt in ((fused_model, fused), (plain_model, plain)):
            model["lm_head"](model["visual"](x)).square().sum().backward()
            opt.step()
            opt.zero_grad()
    for name, weight in fused_model.state_dict().items():
        assert not torch.equal(weight, start[name]), name  # every tensor moved, at its group's lr
        assert torch.allclose(weight, plain_model.state_dict()[name], atol=1e-6), name

def test_fewer_examples_than_a_global_batch_train_one_smaller_step():
    from reasoner_ray.core.config import build_config
    from reasoner_ray.train.runner import fit_global_batch
    from reasoner_ray.train.schedule import sample_order

    config = build_config({}, ["train.num_workers=2", "dpo.global_batch_size=8", "dpo.epochs=1"])
    same, gbs = fit_global_batch(config, "dpo", 20)
    assert same is config and gbs == 8
    fitted, gbs = fit_global_batch(config, "dpo", 7)  # 7 pairs, 2 workers: one step of 6
    assert gbs == 6 and fitted.dpo.global_batch_size == 6 and config.dpo.global_batch_size == 8
    assert fit_global_batch(config, "dpo", 3)[1] == 2
    one, gbs = fit_global_batch(config, "dpo", 1)  # 1 pair, 2 workers: the pair twice, one step of 2
    assert gbs == 2 and one.dpo.epochs == 2
    assert sample_order(1, one.dpo.epochs, gbs, seed=0) == [0, 0]
    accumulating = build_config({}, ["train.num_workers=2", "train.gradient_accumulation_steps=2", "dpo.global_batch_size=8"])
    three, gbs = fit_global_batch(accumulating, "dpo", 3)  # 3 pairs < 2 workers x 2 micro-steps
    order = sample_order(3, three.dpo.epochs, gbs, seed=0)
    assert gbs == 4 and len(order) == 4 and set(order) == {0, 1, 2}


PROJECTORS = {"qwen2_vl": ("model.visual.merger.",), "qwen2_5_vl": ("model.visual.merger.",),
              "qwen3_vl": ("model.visual.merger.", "model.visual.deepstack_merger_list."),
              "llava": ("model.multi_modal_projector.",),
              "llava_next": ("model.multi_modal_projector.", "model.image_newline"),
              "gemma3": ("model.multi_modal_projector.",), "idefics3": ("model.connector.",),
              "internvl": ("model.multi_modal_projector.",)}


@pytest.mark.parametrize("family", sorted(PROJECTORS))
def test_each_family_splits_into_vision_projector_and_language(family, request):
    """The freeze settings and the vision learning rate act on these parts: a family whose projector is filed
    under the tower (Qwen3-VL's DeepStack mergers sit under `visual.`) would be frozen with it."""
    from reasoner_ray.models.loading import load_model_and_processor
    from reasoner_ray.train.model_setup import part_of

    model, _ = load_model_and_processor(request.getfixturevalue(f"tiny_{family}"))
    names = [n for n, _ in model.named_parameters()]
    parts = {n: part_of(n) for n in names}
    assert {n for n in names if parts[n] == "projector"} == {n for n in names if n.startswith(PROJECTORS[family])}
    towers = ("model.visual.", "model.vision_tower.", "model.vision_model.")
    assert all(parts[n] == "vision" for n in names if n.startswith(towers) and not n.startswith(PROJECTORS[family]))
    texts = ("model.language_model.", "model.text_model.", "lm_head.")
    assert all(parts[n] == "language" for n in names if n.startswith(texts))
    assert {"vision", "projector", "language"} == set(parts.values())


def test_every_family_has_one_entry_in_each_registry():
    from typing import get_args

    from reasoner_ray.core.config import ModelConfig
    from reasoner_ray.models.tiny import FAMILIES
    from reasoner_ray.models.tokenizer import IMAGE_SLOTS, IMAGE_TOKENS

    families = set(get_args(ModelConfig.model_fields["family"].annotation))
    assert families == set(FAMILIES) == set(IMAGE_SLOTS) == set(IMAGE_TOKENS) == set(PROJECTORS)


def test_split_digits_gives_every_digit_its_own_token_and_decodes_back():
    """Off, a corpus full of sums teaches the BPE whole numbers ("44" one token); on, no token holds two digits."""
    from reasoner_ray.models.tokenizer import train_tokenizer

    corpus = [f"{a} + {b} = {a + b}." for a in range(10, 60) for b in range(2, 10)] * 4
    text = "36 + 8 = 44. 44 x 7 = 308."
    pieces = {}
    for split in (False, True):
        tok = train_tokenizer(corpus, 400, "qwen2_vl", split_digits=split)
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        pieces[split] = [tok.decode([i]) for i in ids]
    assert " 44" in pieces[False]
    assert all(sum(c.isdigit() for c in p) <= 1 for p in pieces[True])
    assert [p.strip() for p in pieces[True] if p.strip().isdigit()] == list("36844447308")


def test_progress_lines_skip_a_metrics_line_still_being_written(tmp_path, caplog):
    """The trainer appends to metrics.jsonl while the driver's progress thread reads it: a half-written last line
    is left for the next poll, not a crash of the thread."""
    import logging

    from reasoner_ray.train.tracking import ProgressLines

    lines = ProgressLines(str(tmp_path), "dpo", total_steps=2)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.69}\n{"step": 2, "lo')
    with caplog.at_level(logging.INFO, logger="reasoner_ray"):
        lines.poll()
        assert lines.shown == 1
        (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.69}\n{"step": 2, "loss": 0.5}\n')
        lines.poll()
    assert lines.shown == 2
    assert [r.getMessage().split()[2] for r in caplog.records if "[dpo] step" in r.getMessage()] == ["1/2", "2/2"]


class _Encoder:
    """Completion token ids by text: what `collate_pairs` would train on."""

    def completion_ids(self, messages, text, end_turn):
        return [len(word) for word in text.split()] + ([99] if end_turn else [])


@pytest.mark.parametrize("digest, prompt_tokens, reused", [
    ("abc", 7, True),     # the same prompt token ids: the sampled log-probs are the reference's
    ("0" * 16, 7, False),  # as many prompt tokens, other ids (a length check alone took these)
    (None, 7, True),      # rollouts that recorded no digest: checked by length alone
    ("abc", 8, False),    # another prompt length
])
def test_sampled_log_probs_are_reused_only_after_the_same_prompt(digest, prompt_tokens, reused):
    def side(ids, logprobs):
        return SampledTokens(token_ids=ids, logprobs=logprobs, prompt_tokens=prompt_tokens, prompt_digest=digest)

    row = PreferenceRow(question_id="q", question="What is 2 + 3?", image={"path": "q.png"}, chosen="so 5",
                        rejected="so six", chosen_score=1.0, rejected_score=0.0,
                        chosen_sampled=side([2, 1, 99], [-0.5, -0.25, -0.125]),
                        rejected_sampled=side([2, 3, 99, 4], [-1.0, -2.0, -0.5, -3.0]))
    example = {"messages": [], "chosen": "so 5", "rejected": "so six", "chosen_truncated": False,
               "rejected_truncated": False, "prompt_length": 7, "prompt_digest": "abc"}
    assert sampled_logps(_Encoder(), example, row, max_length=64) == ((-0.875, -3.5) if reused else None)


def test_the_tiny_models_cache_key_follows_the_tokenizers_corpus(monkeypatch):
    """A cached model built from an older corpus (other prompts or teacher wordings) is not reused: its tokenizer
    numbers the same tokens in another order, so it is another model."""
    from reasoner_ray.core.config import TinyModelConfig
    from reasoner_ray.models import tiny

    size = TinyModelConfig()
    key = tiny.tiny_model_key("qwen2_vl", size, 0)
    assert tiny.tiny_model_key("qwen2_vl", size, 0) == key and tiny.tiny_model_key("qwen2_vl", size, 1) != key
    monkeypatch.setattr(tiny, "_tokenizer_corpus", lambda: ["The digits are red 5 and blue 4."])
    tiny._corpus_digest.cache_clear()
    try:
        assert tiny.tiny_model_key("qwen2_vl", size, 0) != key
    finally:
        tiny._corpus_digest.cache_clear()
