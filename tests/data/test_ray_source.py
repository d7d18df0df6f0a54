"""Reading into a Ray Dataset: validation runs in Ray tasks, bad rows come out tagged, counts add up."""

import json

import pytest

from reasoner_ray.core.config import DataSource
from reasoner_ray.data.ray_source import good_rows, read_dataset, row_from_record, split_counts

pytestmark = pytest.mark.ray


def test_easy_vqa_streams_into_ray(ray_local):
    ds = read_dataset(DataSource(format="easy_vqa", split="test", limit=50))
    good, bad = split_counts(ds)
    assert good == 50 and not bad
    first = row_from_record(next(iter(good_rows(ds).iter_rows())))
    assert first.source == "easy_vqa" and first.image.path.endswith(".png")


def test_jsonl_bad_rows_counted_in_ray(ray_local, tmp_path):
    from reasoner_ray.data.readers import iter_rows

    row = next(iter_rows(DataSource(format="easy_vqa", split="test", limit=1)))
    lines = [json.dumps({**row.model_dump(mode="json"), "id": f"r{i}"}) for i in range(5)]
    lines += ['{"id": "x", "image": "missing.png", "question": "q", "answer": "a", "answer_type": "open"}', "{oops"]
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    ds = read_dataset(DataSource(format="jsonl", path=str(tmp_path / "d.jsonl")))
    good, bad = split_counts(ds)
    assert good == 5 and dict(bad) == {"missing_image": 1, "malformed_row": 1}
