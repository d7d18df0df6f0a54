"""Readers: easy-VQA from PyPI, the project's JSONL/Parquet, LLaVA conversations; every bad-row reason."""

import base64
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reasoner_ray.core.config import DataSource
from reasoner_ray.data.images import open_image, to_data_url
from reasoner_ray.data.llava import to_llava_record
from reasoner_ray.data.readers import iter_raw, iter_rows


def _easy(split, limit=None):
    return DataSource(format="easy_vqa", split=split, limit=limit)


def test_easy_vqa_sizes_and_types():
    train = list(iter_raw(_easy("train")))
    test = list(iter_raw(_easy("test")))
    assert len(train) == 38575 and len(test) == 9673
    assert {r["answer"] for r in train} == {"circle", "green", "red", "gray", "yes", "teal", "black", "rectangle",
                                           "yellow", "triangle", "brown", "blue", "no"}
    rows = list(iter_rows(_easy("train", limit=20)))
    assert len(rows) == 20
    assert {r.answer_type for r in rows} <= {"yes_no", "open"}
    assert all(r.answer_type == ("yes_no" if r.answer in ("yes", "no") else "open") for r in rows)
    assert open_image(rows[0].image).size == (64, 64)


@pytest.fixture()
def png_bytes():
    row = next(iter_rows(_easy("test", limit=1)))
    return open(row.image.path, "rb").read()


def test_jsonl_every_bad_reason(tmp_path, png_bytes):
    img = tmp_path / "ok.png"
    img.write_bytes(png_bytes)
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes).decode()
    lines = [
        {"id": "good-path", "image": "ok.png", "question": "q?", "answer": "yes", "answer_type": "yes_no", "source": "t"},
        {"id": "good-url", "image": data_url, "question": "q?", "answer": ["a", "b"], "answer_type": "open", "source": "t"},
        {"id": "missing", "image": "nope.png", "question": "q?", "answer": "a", "answer_type": "open"},
        {"id": "corrupt", "image": "bad.png", "question": "q?", "answer": "a", "answer_type": "open"},
        {"id": "badb64", "image": "data:image/png;base64,@@@", "question": "q?", "answer": "a", "answer_type": "open"},
        {"id": "noq", "image": "ok.png", "question": "  ", "answer": "a", "answer_type": "open"},
        {"id": "noa", "image": "ok.png", "question": "q?", "answer": "", "answer_type": "open"},
        {"id": "type", "image": "ok.png", "question": "q?", "answer": "a", "answer_type": "essay"},
        {"id": "noimg", "question": "q?", "answer": "a", "answer_type": "open"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n[1, 2]\n")
    bad = Counter()
    rows = list(iter_rows(DataSource(format="jsonl", path=str(path), image_root=str(tmp_path)), bad))
    assert [r.id for r in rows] == ["good-path", "good-url"]
    assert rows[1].answers == ["a", "b"]
    assert bad == Counter(missing_image=2, corrupt_image=2, empty_question=1, empty_answer=1,
                          unknown_answer_type=1, malformed_row=2)
    assert len(rows) + sum(bad.values()) == len(lines) + 2  # every line ends somewhere


def test_parquet_in_project_schema(tmp_path, png_bytes):
    table = pa.Table.from_pylist([
        {"id": "p1", "image": {"data": png_bytes, "path": None, "url": None}, "question": "q?", "answer": "no",
         "answer_type": "yes_no", "source": "pq"},
        {"id": "p2", "image": {"data": b"garbage", "path": None, "url": None}, "question": "q?", "answer": "no",
         "answer_type": "yes_no", "source": "pq"},
    ])
    pq.write_table(table, tmp_path / "d.parquet")
    bad = Counter()
    rows = list(iter_rows(DataSource(format="parquet", path=str(tmp_path)), bad))
    assert [r.id for r in rows] == ["p1"] and rows[0].image.data == png_bytes
    assert bad == Counter(corrupt_image=1)


def test_llava_conversations_round_trip(tmp_path, png_bytes):
    (tmp_path / "img.png").write_bytes(png_bytes)
    recs = [
        to_llava_record("c1", "img.png", "what color?\nGenerate a reason first and then output a short answer.",
                        "It is red.\n### Answer: red", answer_type="open", source="easy_vqa"),
        to_llava_record("d1", "img.png", "is it red?\nAnswer the question with a short answer.", "yes",
                        answer_type="yes_no"),
        {"id": "broken", "conversations": [{"from": "human"}]},
    ]
    path = tmp_path / "cot.none.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs))
    bad = Counter()
    rows = list(iter_rows(DataSource(format="llava", path=str(path), image_root=str(tmp_path)), bad))
    assert [(r.id, r.question, r.answer, r.rationale, r.answer_type) for r in rows] == [
        ("c1", "what color?", "red", "It is red.", "open"),
        ("d1", "is it red?", "yes", None, "yes_no"),
    ]
    assert bad == Counter(malformed_row=1)


def test_data_url_keeps_original_bytes(png_bytes, tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes)
    from reasoner_ray.core.rows import ImageRef

    url = to_data_url(ImageRef(path=str(p)))
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == png_bytes


def _jsonl(tmp_path, records, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_rows_without_an_id_get_distinct_stable_ids_and_duplicates_are_rejected(tmp_path, png_bytes):
    (tmp_path / "ok.png").write_bytes(png_bytes)
    q = {"image": "ok.png", "answer_type": "open", "source": "t"}
    records = [
        {**q, "question": "what shape?", "answer": "circle"},  # no id
        {**q, "question": "what color?", "answer": "red"},  # no id, another question
        {**q, "id": "a", "question": "q1?", "answer": "x"},
        {**q, "id": "a", "question": "q2?", "answer": "y"},  # same id, another question: the join key would merge them
        {**q, "question": "what shape?", "answer": "circle"},  # the first line again
    ]
    source = DataSource(format="jsonl", path=str(_jsonl(tmp_path, records)), image_root=str(tmp_path))
    bad = Counter()
    rows = list(iter_rows(source, bad))
    assert [r.question for r in rows] == ["what shape?", "what color?", "q1?"]
    assert len({r.id for r in rows}) == 3 and rows[2].id == "a"
    assert bad == Counter(duplicate_id=2)
    assert [r.id for r in iter_rows(source)] == [r.id for r in rows]  # stable across reads
    # the id depends on the record, not on where it sits: the same row in another file keeps its id
    moved = _jsonl(tmp_path, [records[1]], name="other.jsonl")
    assert next(iter_rows(source.model_copy(update={"path": str(moved)}))).id == rows[1].id

