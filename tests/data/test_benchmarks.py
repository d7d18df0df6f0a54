"""Every benchmark reader round-trips small files the test writes in the benchmark's official layout and in its
HF parquet layout (generated images; nothing downloaded): ids, answer types, golds (the option's text for multiple
choice), choices, context and tags; a record with a missing image is counted by reason, not lost."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.prompts import gold_answer, teacher_messages, user_text
from reasoner_ray.data.images import open_image
from reasoner_ray.data.readers import iter_checked


def png(shade: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (shade, 100, 200)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: Path, shade: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(shade))
    return path.name


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def write_parquet(path: Path, records: list[dict], image_key: str = "image") -> Path:
    """Records in the HF layout: the image column is the struct {bytes, path} that `datasets.Image()` writes."""
    rows = [{**r, image_key: {"bytes": png(i), "path": None}} for i, r in enumerate(records)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def teacher_text(row) -> str:
    return teacher_messages(row, "data:image/png;base64,", include_answer=False)[1]["content"][1]["text"]


def read(source: DataSource):
    checked = list(iter_checked(source))
    rows = [c.row for c in checked if c.row is not None]
    bad = Counter(c.reason for c in checked if c.row is None)
    for row in rows:
        open_image(row.image)  # every row's image decodes
    return rows, bad


def test_aokvqa_official_and_parquet(tmp_path, monkeypatch):
    recs = [{"question_id": "q1", "image_id": 7, "question": "Why the leash?", "choices": ["dog", "fish", "cat", "cow"],
             "correct_choice_idx": 0, "direct_answers": ["dog"] * 10},
            {"question_id": "q2", "image_id": 8, "question": "What sport?", "choices": ["golf", "polo", "ski", "judo"],
             "correct_choice_idx": 2, "direct_answers": ["ski"] * 10},
            {"question_id": "q3", "image_id": 99, "question": "No image?", "choices": ["a", "b", "c", "d"],
             "correct_choice_idx": 1}]
    save_png(tmp_path / "coco" / "val2017" / "000000000007.jpg")
    save_png(tmp_path / "coco" / "val2017" / "000000000008.jpg")
    file = write_json(tmp_path / "aokvqa" / "aokvqa_v1p0_val.json", recs)
    rows, bad = read(DataSource(format="aokvqa", path=str(file), split="validation", image_root=str(tmp_path / "coco")))
    assert [(r.id, r.answer, r.answer_type, r.choices) for r in rows] == [
        ("aokvqa-q1", "dog", "multiple_choice", ["dog", "fish", "cat", "cow"]),
        ("aokvqa-q2", "ski", "multiple_choice", ["golf", "polo", "ski", "judo"])]
    assert bad == {"missing_image": 1}
    assert user_text(rows[0], "cot").endswith("A. dog\nB. fish\nC. cat\nD. cow\nGenerate a reason first and then output a letter.")
    parquet = write_parquet(tmp_path / "hf" / "validation-00000-of-00001.parquet", recs[:2])
    write_parquet(tmp_path / "hf" / "train-00000-of-00001.parquet", recs[2:])  # another split: not read
    rows, _ = read(DataSource(format="aokvqa", path=str(parquet.parent), split="validation"))
    assert [(r.id, r.answer) for r in rows] == [("aokvqa-q1", "dog"), ("aokvqa-q2", "ski")]
    # a relative image_root is joined once (before: twice, and every row was missing_image)
    monkeypatch.chdir(tmp_path)
    rows, bad = read(DataSource(format="aokvqa", path="aokvqa/aokvqa_v1p0_val.json", split="validation", image_root="coco"))
    assert len(rows) == 2 and bad == {"missing_image": 1}
    (tmp_path / "hf" / "validation-00000-of-00001.parquet").unlink()  # no file of the split left: refused, named
    with pytest.raises(FileNotFoundError, match="no parquet file of split validation"):
        read(DataSource(format="aokvqa", path=str(parquet.parent), split="validation"))


@pytest.mark.parametrize("wrapped", [False, True])
def test_chartqa_official_list_or_data_wrapper_and_parquet(tmp_path, wrapped):
    test = tmp_path / "ChartQA Dataset" / "test"
    human = [{"imgname": save_png(test / "png" / "1.png"), "query": "Highest bar?", "label": "42.5"}]
    augmented = [{"imgname": save_png(test / "png" / "2.png"), "query": "Which party?", "label": "Republicans"}]
    write_json(test / "test_human.json", {"data": human} if wrapped else human)
    write_json(test / "test_augmented.json", augmented)
    rows, bad = read(DataSource(format="chartqa", path=str(test), split="test"))
    assert [(r.id, r.answer, r.answer_type, r.tags) for r in rows] == [
        ("chartqa-human-0", "42.5", "relaxed", ["chartqa:human"]),
        ("chartqa-augmented-0", "Republicans", "relaxed", ["chartqa:augmented"])] and not bad
    assert "no unit and no % sign" in teacher_text(rows[0])  # the paper's chart wording
    parquet = write_parquet(tmp_path / "hf" / "data" / "test-00000-of-00001.parquet", [
        {"type": "human_test", "question": "Highest bar?", "answer": "42.5"},
        {"type": "augmented_test", "question": "Lowest?", "answer": "3"}])
    rows, _ = read(DataSource(format="chartqa", path=str(parquet.parent.parent), split="test"))
    assert [(r.id, r.answer, r.tags) for r in rows] == [("chartqa-test-0", "42.5", ["chartqa:human"]),
                                                        ("chartqa-test-1", "3", ["chartqa:augmented"])]


def test_scienceqa_image_questions_of_the_split_with_context(tmp_path):
    folder = tmp_path / "scienceqa"
    problems = {
        "10": {"question": "Which animal digs?", "choices": ["mole", "duck"], "answer": 0, "hint": "Moles live underground.",
               "image": "image.png", "split": "test"},
        "11": {"question": "Text only?", "choices": ["a", "b"], "answer": 1, "hint": "", "image": None, "split": "test"},
        "12": {"question": "Which is a magnet?", "choices": ["iron", "wood", "gold"], "answer": 2, "hint": "",
               "image": "image.png", "split": "test"},
        "13": {"question": "Train?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png", "split": "train"},
    }
    write_json(folder / "problems.json", problems)
    write_json(folder / "pid_splits.json", {"train": ["13"], "val": [], "test": ["10", "11", "12"]})
    save_png(folder / "images" / "test" / "10" / "image.png")
    save_png(folder / "images" / "test" / "12" / "image.png")
    rows, bad = read(DataSource(format="scienceqa", path=str(folder), split="test"))
    assert [(r.id, r.answer, r.choices) for r in rows] == [("scienceqa-10", "mole", ["mole", "duck"]),
                                                          ("scienceqa-12", "gold", ["iron", "wood", "gold"])] and not bad
    assert rows[0].question == "Context: Moles live underground.\nWhich animal digs?" and rows[1].question == "Which is a magnet?"
    parquet = write_parquet(tmp_path / "hf" / "ScienceQA-IMG" / "test-00000-of-00001.parquet", [
        {"question": "Which animal digs?", "choices": ["mole", "duck"], "answer": 1, "hint": "Moles live underground."},
        {"question": "Text only?", "choices": ["a", "b"], "answer": 0, "hint": ""}])
    table = pq.read_table(parquet).to_pylist()
    table[1]["image"] = None  # the HF copy keeps text-only questions with no image; the official layout drops them
    pq.write_table(pa.Table.from_pylist(table), parquet)
    rows, bad = read(DataSource(format="scienceqa", path=str(parquet), split="test"))
    assert [(r.answer, r.question) for r in rows] == [("duck", "Context: Moles live underground.\nWhich animal digs?")]
    assert not bad


def test_ai2d_official_test_ids_and_parquet_index_strings(tmp_path):
    folder = tmp_path / "ai2d"
    for n in (1, 2):
        save_png(folder / "images" / f"{n}.png", n)
        write_json(folder / "questions" / f"{n}.png.json", {"imageName": f"{n}.png", "questions": {
            f"Which stage is the larva in diagram {n}?": {"abcLabel": False, "answerTexts": ["egg", "larva", "pupa", "adult"],
                                                          "correctAnswer": n, "questionId": f"{n}.png-0"}}})
    (folder / "ai2d_test_ids.csv").write_text("2\n")
    rows, _ = read(DataSource(format="ai2d", path=str(folder), split="test"))
    assert [(r.id, r.answer, r.choices) for r in rows] == [("ai2d-2.png-0", "pupa", ["egg", "larva", "pupa", "adult"])]
    assert len(read(DataSource(format="ai2d", path=str(folder), split="train"))[0]) == 2
    # Options that are themselves letters, in another order: the gold is option 2 (C), whose text is "D"
    parquet = write_parquet(tmp_path / "hf" / "data" / "test-00000-of-00001.parquet", [
        {"question": "Which label shows the larva?", "options": ["C", "A", "D", "B"], "answer": "2"}])
    rows, _ = read(DataSource(format="ai2d", path=str(parquet.parent), split="test"))
    assert (rows[0].answer, rows[0].answer_type) == ("D", "multiple_choice")
    from reasoner_ray.core.prompts import gold_for_response
    from reasoner_ray.core.reward import score

    assert gold_for_response(rows[0]) == "C"  # SFT teaches the letter of the third option
    assert score("### Answer: C", rows[0].answer, "multiple_choice", rows[0].choices).correct
    assert not score("### Answer: A", rows[0].answer, "multiple_choice", rows[0].choices).correct
    assert not score("### Answer: D", rows[0].answer, "multiple_choice", rows[0].choices).correct


def test_docvqa_infovqa_textvqa_official_and_parquet(tmp_path):
    doc = tmp_path / "docvqa" / "val"
    save_png(doc / "documents" / "abcd_4.png")
    write_json(doc / "val_v1.0.json", {"dataset_name": "docvqa", "data": [
        {"questionId": 50123, "question": "Date on the memo?", "image": "documents/abcd_4.png",
         "answers": ["May 3, 1979", "5/3/79"], "data_split": "val"}]})
    rows, _ = read(DataSource(format="docvqa", path=str(doc), split="validation"))
    assert [(r.id, r.answer, r.answer_type) for r in rows] == [("docvqa-50123", ["May 3, 1979", "5/3/79"], "anls")]
    assert "a single word or phrase copied from the image" in teacher_text(rows[0])  # the paper's document wording

    info = tmp_path / "infovqa"
    save_png(info / "infographicsvqa_images" / "40210.jpeg")
    write_json(info / "infographicsVQA_val_v1.0_withQT.json", {"data": [
        {"questionId": 70001, "question": "Share of teens?", "image_local_name": "40210.jpeg", "answers": ["18%", "18"]}]})
    rows, _ = read(DataSource(format="infovqa", path=str(info), split="validation"))
    assert [(r.id, r.answer, r.answer_type) for r in rows] == [("infovqa-70001", ["18%", "18"], "anls")]

    text = tmp_path / "textvqa"
    save_png(text / "train_images" / "0a1b2c.jpg")
    answers = ["pepsi"] * 7 + ["pepsi cola"] * 3
    write_json(text / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "data": [
        {"question_id": 34700, "image_id": "0a1b2c", "question": "what brand is the soda?", "answers": answers, "set_name": "val"}]})
    rows, _ = read(DataSource(format="textvqa", path=str(text), split="validation"))
    assert [(r.id, r.answer, r.answer_type) for r in rows] == [("textvqa-34700", answers, "open")]
    assert gold_answer(rows[0]) == "pepsi"  # the consensus of the ten answers is what a CoT target writes

    for fmt, rec in (("docvqa", {"questionId": "50123", "question": "Date?", "answers": ["May 3"]}),
                     ("infovqa", {"questionId": "70001", "question": "Teens?", "answers": ["18%"], "ocr": "x"}),
                     ("textvqa", {"question_id": 34700, "question": "brand?", "answers": answers, "ocr_tokens": ["pepsi"]})):
        parquet = write_parquet(tmp_path / f"hf-{fmt}" / "validation-00000-of-00001.parquet", [rec])
        rows, _ = read(DataSource(format=fmt, path=str(parquet.parent), split="validation"))
        assert rows[0].id == f"{fmt}-{rec.get('questionId', rec.get('question_id'))}" and rows[0].answer == rec["answers"]


def test_mathvista_choice_text_and_units(tmp_path):
    data = tmp_path / "MathVista" / "data"
    save_png(data / "images" / "1.jpg")
    save_png(data / "images" / "2.jpg")
    save_png(data / "images" / "3.jpg")
    testmini = {
        "1": {"question": "Which is larger?", "image": "images/1.jpg", "choices": ["3", "5", "7"], "unit": None,
              "precision": None, "answer": "7", "question_type": "multi_choice", "answer_type": "text"},
        "2": {"question": "What is the length of AB?", "image": "images/2.jpg", "choices": None, "unit": "cm",
              "precision": 1, "answer": "7.5", "question_type": "free_form", "answer_type": "float"},
        "3": {"question": "Not an option?", "image": "images/3.jpg", "choices": ["a", "b"], "unit": None,
              "precision": None, "answer": "c", "question_type": "multi_choice", "answer_type": "text"},
    }
    write_json(data / "testmini.json", testmini)
    rows, bad = read(DataSource(format="mathvista", path=str(data), split="testmini"))
    assert [(r.id, r.answer, r.answer_type) for r in rows] == [("mathvista-1", "7", "multiple_choice"),
                                                              ("mathvista-2", "7.5", "mathvista")]
    assert rows[1].question == "What is the length of AB? (Unit: cm)" and "mathvista:float" in rows[1].tags
    assert bad == {"empty_answer": 1}  # a multiple-choice gold that is none of the choices is counted, not guessed
    records = [{"pid": pid, **{k: v for k, v in rec.items() if k != "image"}, "image": rec["image"],
                "precision": None if rec["precision"] is None else float(rec["precision"])}  # parquet: float64
               for pid, rec in list(testmini.items())[:2]]
    parquet = write_parquet(tmp_path / "hf" / "data" / "testmini-00000-of-00001.parquet", records, image_key="decoded_image")
    write_parquet(tmp_path / "hf" / "data" / "test-00000-of-00001.parquet", records[:1], image_key="decoded_image")
    rows, _ = read(DataSource(format="mathvista", path=str(parquet.parent), split="testmini"))
    assert [(r.id, r.answer) for r in rows] == [("mathvista-1", "7"), ("mathvista-2", "7.5")]
