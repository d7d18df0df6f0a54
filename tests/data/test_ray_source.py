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


def _mixed_jsonl(tmp_path):
    from reasoner_ray.data.readers import iter_rows

    row = next(iter_rows(DataSource(format="easy_vqa", split="test", limit=1)))
    good = {k: v for k, v in row.model_dump(mode="json").items() if k != "id"}
    (tmp_path / "bad.png").write_bytes(b"not a png")
    lines = [json.dumps({**good, "question": f"q{i}?"}) for i in range(4)]  # no ids
    lines.insert(1, json.dumps({**good, "question": "corrupt?", "image": {"path": str(tmp_path / "bad.png")}}))
    lines.insert(3, "{oops")
    lines.append(lines[0])  # an exact duplicate of the first row
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "d.jsonl"


@pytest.mark.parametrize("fmt", ["jsonl", "llava"])
@pytest.mark.parametrize("limit, offset", [(None, 0), (2, 0), (None, 1), (2, 1)])
def test_ray_and_driver_reads_agree_on_ids_limit_and_rejections(ray_local, tmp_path, fmt, limit, offset):
    from collections import Counter

    from reasoner_ray.data.llava import to_llava_record
    from reasoner_ray.data.readers import iter_rows

    path = _mixed_jsonl(tmp_path)
    if fmt == "llava":  # the same rows as LLaVA conversations, still without ids
        out = []
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                out.append(line)
                continue
            rec = to_llava_record("x", r["image"]["path"], f"{r['question']}\nAnswer the question with a short answer.",
                                  r["answer"], answer_type=r["answer_type"])
            out.append(json.dumps({k: v for k, v in rec.items() if k != "id"}))
        path.write_text("\n".join(out) + "\n")
    source = DataSource(format=fmt, path=str(path), limit=limit, offset=offset)
    bad = Counter()
    driver = [r.id for r in iter_rows(source, bad)]
    ds = read_dataset(source)
    ray_ids = [rec["id"] for rec in good_rows(ds).iter_rows()]
    good, ray_bad = split_counts(ds)
    assert sorted(ray_ids) == sorted(driver) and len(set(driver)) == len(driver)
    assert good == len(driver) == (limit or 4 - offset)
    assert ray_bad == bad
    if limit is None:  # the offset skips the first good row; the exact copy of it at the end is still a duplicate
        assert bad == Counter(corrupt_image=1, malformed_row=1, duplicate_id=1)
    if offset:
        whole = [r.id for r in iter_rows(source.model_copy(update={"offset": 0, "limit": None}))]
        assert driver == whole[offset:offset + (limit or len(whole))]


def test_pairs_stage_finds_every_question_the_rollouts_read(ray_local, tmp_path):
    from reasoner_ray.core.config import Config
    from reasoner_ray.pipeline.generate import questions_of
    from reasoner_ray.core.data_regime import rollout_source
    from reasoner_ray.pipeline.stages.pairs import rows_by_id

    config = Config.model_validate({"data": {"train": {"format": "jsonl", "path": str(_mixed_jsonl(tmp_path))}},
                                    "rollout": {"limit": 2}})
    ids = {rec["id"] for rec in questions_of(rollout_source(config, 1)).iter_rows()}
    assert len(ids) == 2
    assert set(rows_by_id(config, 1, ids)) == ids  # before: KeyError in the pairs stage for a row past a bad one
