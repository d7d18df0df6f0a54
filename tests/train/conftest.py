"""Small training inputs for tests/train: VQARow files (with rationales) and PreferenceRow files from easy-VQA."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_vqa_rows(n: int):
    import easy_vqa

    from reasoner_ray.core.rows import ImageRef, VQARow

    questions, answers, image_ids = easy_vqa.get_train_questions()
    paths = easy_vqa.get_train_image_paths()
    rows = []
    for i in range(n):
        answer = answers[i]
        rows.append(VQARow(
            id=f"q{i}", image=ImageRef(path=paths[image_ids[i]]), question=questions[i], answer=answer,
            answer_type="yes_no" if answer in ("yes", "no") else "open", source="easy_vqa",
            rationale=None if i % 4 == 3 else f"I look at the shape in the image. It shows {answer}.",
        ))
    return rows


def make_pairs(n: int):
    from reasoner_ray.core.prompts import prompt_messages
    from reasoner_ray.core.rows import PreferenceRow

    pairs = []
    for i, row in enumerate(make_vqa_rows(n)):
        pairs.append(PreferenceRow(
            question_id=row.id, question=row.question, image=row.image, messages=prompt_messages(row, "cot"),
            chosen=f"The image shows a shape. It is {row.answers[0]}.\n### Answer: {row.answers[0]}",
            rejected="I cannot tell" + " really" * (i % 3) + ".\n### Answer: unknown",
            chosen_score=1.0, rejected_score=0.0,
        ))
    return pairs


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory) -> Path:
    from reasoner_ray.train.data import write_rows

    d = tmp_path_factory.mktemp("train_data")
    write_rows(make_vqa_rows(12), d / "sft_rows.jsonl")
    write_rows(make_pairs(16), d / "pairs.jsonl")
    return d


def _config(overrides: list[str]):
    from reasoner_ray.core.config import build_config

    return build_config({}, ["train.num_workers=2", "train.log_every_steps=1", "train.max_length=256", *overrides])


@pytest.fixture(scope="session")
def sft_zero2_run(ray_local, tiny_qwen2_vl, train_data_dir, tmp_path_factory):
    """SFT of the tiny Qwen2-VL with 2 CPU workers, ZeRO-2 (one run shared by the tests that inspect it)."""
    from reasoner_ray.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft_zero2")
    config = _config(["train.zero_stage=2", "sft.global_batch_size=4", "sft.lr=1e-4", "train.checkpoint_every_steps=3"])
    return run_sft(config, tiny_qwen2_vl, str(train_data_dir / "sft_rows.jsonl"), str(out))
