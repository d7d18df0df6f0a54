"""TRL interop: this project's pairs exported in TRL's format read back identical (Parquet and JSONL), load with
`datasets` and train one real TRL DPOTrainer step on the tiny Qwen2-VL; pairs made elsewhere in TRL's standard
(string) format become PreferenceRows; SFT examples export as TRL messages records."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("train_conftest", Path(__file__).resolve().parents[1] / "train" / "conftest.py")
_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_train)
make_pairs, make_vqa_rows = _train.make_pairs, _train.make_vqa_rows  # the pairs and rows the training tests use

from reasoner_ray.core.rows import PreferenceRow  # noqa: E402
from reasoner_ray.data.images import image_bytes  # noqa: E402
from reasoner_ray.data.trl_format import pair_to_trl, write_trl  # noqa: E402
from reasoner_ray.train.data import RowFileError, read_rows, write_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_pairs_round_trip_through_trl_files(tmp_path, suffix):
    pairs = make_pairs(5)
    pairs[1] = pairs[1].model_copy(update={"chosen_truncated": True})  # cut chains stay cut: no end of turn added
    pairs[3] = pairs[3].model_copy(update={"rejected_truncated": True})
    path = write_trl([pair_to_trl(p) for p in pairs], tmp_path / f"pairs{suffix}")
    back = read_rows(path, PreferenceRow)
    fields = lambda r: (r.question_id, r.question, r.messages, r.chosen, r.rejected, r.chosen_score,  # noqa: E731
                        r.chosen_truncated, r.rejected_truncated)
    assert [fields(b) for b in back] == [fields(p) for p in pairs]
    assert [image_bytes(b.image) for b in back] == [image_bytes(p.image) for p in pairs]


def test_pairs_made_elsewhere_in_trl_standard_format(tmp_path):
    image = make_pairs(1)[0].image
    write_rows(make_pairs(1), tmp_path / "ours.jsonl")  # the project's own format still reads as before
    image_path = tmp_path / "img.png"
    image_path.write_bytes(image_bytes(image))
    lines = [{"prompt": "What shape is it?", "chosen": "A circle.\n### Answer: circle", "rejected": "### Answer: square",
              "images": [str(image_path)]},
             {"prompt": "Colour?", "chosen": "red", "rejected": "blue", "images": []}]
    (tmp_path / "elsewhere.jsonl").write_text("\n".join(json.dumps(x) for x in lines[:1]) + "\n")
    [pair] = read_rows(tmp_path / "elsewhere.jsonl", PreferenceRow)
    assert (pair.question, pair.chosen, pair.rejected) == ("What shape is it?", "A circle.\n### Answer: circle", "### Answer: square")
    assert pair.messages[0]["content"][0] == {"type": "image"} and pair.question_id.startswith("trl-")
    (tmp_path / "bad.jsonl").write_text(json.dumps(lines[1]) + "\n")
    with pytest.raises(RowFileError, match=r"bad.jsonl:1: not a TRL preference record: a pair needs exactly one image"):
        read_rows(tmp_path / "bad.jsonl", PreferenceRow)


@pytest.mark.slow
def test_trl_dpo_trains_a_step_on_exported_pairs(tmp_path, tiny_qwen2_vl):
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer

    from reasoner_ray.models.loading import load_model_and_processor

    path = write_trl([pair_to_trl(p) for p in make_pairs(4)], tmp_path / "pairs.parquet")
    data = load_dataset("parquet", data_files=str(path), split="train")
    assert data[0]["images"][0].size[0] > 0  # decoded to a PIL image by the Image() feature
    policy, processor = load_model_and_processor(tiny_qwen2_vl)
    reference, _ = load_model_and_processor(tiny_qwen2_vl)
    args = DPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, per_device_train_batch_size=2,
                     max_steps=1, remove_unused_columns=False, report_to=[], save_strategy="no", logging_steps=1,
                     max_length=None, disable_tqdm=True, seed=0)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data, processing_class=processor)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 1 and losses and math.isfinite(losses[0])


def test_export_job_writes_sft_examples_as_trl_messages(tmp_path):
    import subprocess

    rows = [row.model_copy(update={"rationale": "The shape is round." if i == 0 else None})
            for i, row in enumerate(make_vqa_rows(3))]
    write_rows(rows, tmp_path / "rows.jsonl")
    out = subprocess.run([sys.executable, "jobs/export_trl.py", "--sft", str(tmp_path / "rows.jsonl"),
                          "--out", str(tmp_path / "sft.jsonl")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert len(records) == 4  # one CoT (the row with a rationale) + three direct
    cot = records[0]
    assert [m["role"] for m in cot["messages"]] == ["user", "assistant"] and len(cot["images"]) == 1
    assert cot["messages"][1]["content"][0]["text"].startswith("The shape is round.")
    assert Path(cot["images"][0]).is_file()


def test_write_rows_is_whole_or_nothing(tmp_path, monkeypatch):
    """A kill while a Parquet file of rows is written leaves the old file (or none), never a half one."""
    import pyarrow.parquet as pq

    pairs = make_pairs(3)
    path = tmp_path / "pairs.parquet"
    write_rows(pairs[:1], path)

    def killed(table, where, *args, **kwargs):  # `where`: a path or a buffer
        if hasattr(where, "write"):
            where.write(b"PAR1 half a file")
        else:
            with open(where, "wb") as fh:
                fh.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", killed)
    with pytest.raises(KeyboardInterrupt):
        write_rows(pairs, path)
    monkeypatch.undo()
    assert [r.question_id for r in read_rows(path, PreferenceRow)] == [pairs[0].question_id]
