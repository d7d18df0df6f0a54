"""Readers for every supported data format, all ending in the project's `VQARow`.

Each format registers a function that yields raw records (plain dicts, images by reference only); one shared
`to_row()` validates a record into a VQARow or raises `BadRow` with a reason tag. `iter_rows()` is the
in-process path (tests, small driver-side jobs); `reasoner_ray.data.ray_source` runs the same `to_row()`
inside Ray Data tasks so images are never all materialised in the driver.

Bad-row reasons: missing_image, corrupt_image, empty_question, empty_answer, unknown_answer_type,
malformed_row. Each bad row is logged once with its id and reason and counted; none is silently dropped.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.rows import ANSWER_TYPES, VQARow
from reasoner_ray.data.images import ImageError, open_image, parse_image_field
from reasoner_ray.data.llava import llava_record_to_raw

log = logging.getLogger(__name__)

BAD_ROW_REASONS = ("missing_image", "corrupt_image", "empty_question", "empty_answer", "unknown_answer_type", "malformed_row")


class BadRow(ValueError):
    def __init__(self, row_id: str, reason: str, detail: str = ""):
        super().__init__(f"row {row_id}: {reason}{': ' + detail if detail else ''}")
        self.row_id = row_id
        self.reason = reason
        self.detail = detail


RawReader = Callable[[DataSource], Iterator[dict[str, Any]]]
READERS: dict[str, RawReader] = {}


def register_reader(name: str) -> Callable[[RawReader], RawReader]:
    def deco(fn: RawReader) -> RawReader:
        READERS[name] = fn
        return fn

    return deco


def easy_vqa_answer_type(answer: str) -> str:
    return "yes_no" if answer in ("yes", "no") else "open"


@register_reader("easy_vqa")
def _read_easy_vqa(source: DataSource) -> Iterator[dict[str, Any]]:
    import easy_vqa  # the PyPI package ships the questions and the 64x64 PNG images

    if source.split == "train":
        questions, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    else:
        questions, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    for i, (q, a, image_id) in enumerate(zip(questions, answers, image_ids)):
        yield {
            "id": f"easy_vqa-{source.split}-{i}",
            "image": paths.get(image_id, ""),
            "question": q,
            "answer": a,
            "answer_type": easy_vqa_answer_type(a),
            "choices": None,
            "source": "easy_vqa",
        }


def _files(path: str, suffixes: tuple[str, ...]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.suffix in suffixes)
    if not p.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    return [p]


def parse_json_line(line: str, loc: str) -> dict[str, Any]:
    """One JSONL line -> a raw record, or a record flagged `_malformed` (so it is counted, not lost)."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        return {"id": loc, "_malformed": f"invalid JSON ({err.msg})"}
    if not isinstance(rec, dict):
        return {"id": loc, "_malformed": "line is not a JSON object"}
    return rec


def _jsonl_lines(path: str) -> Iterator[tuple[str, str]]:
    for f in _files(path, (".jsonl", ".json")):
        with f.open() as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    yield f"{f.name}:{n}", line


@register_reader("jsonl")
def _read_jsonl(source: DataSource) -> Iterator[dict[str, Any]]:
    for loc, line in _jsonl_lines(source.path or ""):
        yield parse_json_line(line, loc)


@register_reader("parquet")
def _read_parquet(source: DataSource) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for f in _files(source.path or "", (".parquet",)):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=256):
            yield from batch.to_pylist()


@register_reader("llava")
def _read_llava(source: DataSource) -> Iterator[dict[str, Any]]:
    for loc, line in _jsonl_lines(source.path or ""):
        yield llava_line_to_raw(line, loc, source)


def llava_line_to_raw(line: str, loc: str, source: DataSource) -> dict[str, Any]:
    rec = parse_json_line(line, loc)
    if rec.get("_malformed"):
        return rec
    return llava_record_to_raw(rec, default_answer_type=source.answer_type, fallback_id=loc)


def to_row(raw: dict[str, Any], source: DataSource, check_image: bool = True) -> VQARow:
    """Validate one raw record into a VQARow, or raise BadRow naming the reason."""
    row_id = str(raw.get("id") or "<no id>")
    if raw.get("_malformed"):
        raise BadRow(row_id, "malformed_row", raw["_malformed"])
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRow(row_id, "empty_question")
    answer = raw.get("answer")
    answers = answer if isinstance(answer, list) else [answer]
    if not answers or any(not isinstance(a, str) or not a.strip() for a in answers):
        raise BadRow(row_id, "empty_answer")
    answer_type = raw.get("answer_type") or source.answer_type
    if answer_type not in ANSWER_TYPES:
        raise BadRow(row_id, "unknown_answer_type", f"{answer_type!r} is not one of {', '.join(ANSWER_TYPES)}")
    try:
        image = parse_image_field(raw.get("image"), source.image_root)
        if check_image:
            open_image(image)
    except ImageError as err:
        raise BadRow(row_id, err.reason, err.detail) from None
    except ValidationError as err:
        raise BadRow(row_id, "missing_image", str(err.errors()[0]["msg"])) from None
    fields = {k: v for k, v in raw.items() if k in VQARow.model_fields and not k.startswith("_")}
    fields.update(id=row_id, image=image, answer_type=answer_type, question=question.strip())
    fields.setdefault("source", source.format)
    try:
        return VQARow.model_validate(fields)
    except ValidationError as err:
        first = err.errors()[0]
        raise BadRow(row_id, "malformed_row", f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def iter_raw(source: DataSource) -> Iterator[dict[str, Any]]:
    try:
        reader = READERS[source.format]
    except KeyError:
        raise ValueError(f"data.format {source.format!r} is not one of {sorted(READERS)}") from None
    return reader(source)


def iter_rows(source: DataSource, bad: Counter | None = None, check_image: bool = True) -> Iterator[VQARow]:
    """Good rows in order, up to `source.limit`; each bad row is logged and counted in `bad` by reason."""
    produced = 0
    for raw in iter_raw(source):
        if source.limit is not None and produced >= source.limit:
            return
        try:
            row = to_row(raw, source, check_image=check_image)
        except BadRow as err:
            log.warning("skipping bad row %s: %s%s", err.row_id, err.reason, f" ({err.detail})" if err.detail else "")
            if bad is not None:
                bad[err.reason] += 1
            continue
        produced += 1
        yield row
