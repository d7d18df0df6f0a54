"""Readers for every supported data format, all ending in the project's `VQARow`.

Each format registers a function that yields raw records in a fixed order (plain dicts, images by reference
only); one shared `to_row()` validates a record into a VQARow or raises `BadRow` with a reason tag, and one
`RowSelector` rejects a repeated id and stops after `limit` good rows. Both ways of reading go through these
three, so they return the same rows with the same ids: `iter_checked()` / `iter_rows()` in-process, and
`reasoner_ray.data.ray_source`, which runs `to_row()` (the image decoding) in Ray tasks.

Ids are the join key of rollouts, rewards and pairs, so `record_id()` is the one rule: the record's own `id`,
else one derived from the record's content (the same in every reader, on every machine, wherever the line sits).

Bad-row reasons: missing_image, corrupt_image, image_too_large (a header past PIL's decompression-bomb bound),
empty_question, empty_answer, unknown_answer_type, malformed_row, duplicate_id. Each bad row is logged once with its id and reason and
counted; none is silently dropped.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.rows import ANSWER_TYPES, VQARow
from reasoner_ray.data.arithmetic import read_arithmetic
from reasoner_ray.data.benchmarks import BENCHMARK_READERS
from reasoner_ray.data.digits import read_digits
from reasoner_ray.data.images import ImageError, open_image, parse_image_field
from reasoner_ray.data.llava import llava_record_to_raw

log = logging.getLogger(__name__)

BAD_ROW_REASONS = ("missing_image", "corrupt_image", "image_too_large", "empty_question", "empty_answer",
                   "unknown_answer_type", "malformed_row", "duplicate_id")
DUPLICATE_ID = "duplicate_id"


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

    if source.split not in ("train", "test"):
        raise ValueError(f"easy_vqa has splits train and test, not {source.split!r}")
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


register_reader("digits")(read_digits)
register_reader("arithmetic")(read_arithmetic)
for _name, _reader in BENCHMARK_READERS.items():  # the paper's eight benchmarks (data/benchmarks.py)
    register_reader(_name)(_reader)


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
    # The id is derived from the conversation as released, before it is turned into a row.
    return llava_record_to_raw(rec, default_answer_type=source.answer_type, fallback_id=content_id(rec, source.format))


def _json_default(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def content_id(record: dict[str, Any], fmt: str) -> str:
    """`<format>-<16 hex digits of sha256 of the record>`: canonical JSON (sorted keys), so equal records get
    equal ids (the second is then rejected as a duplicate) and any difference gives another id."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, default=_json_default)
    return f"{fmt}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def record_id(raw: dict[str, Any], fmt: str) -> str:
    """The one id rule: the record's own `id` (a non-empty string, or an integer), else `content_id()`."""
    own = raw.get("id")
    if isinstance(own, str) and own.strip():
        return own.strip()
    if isinstance(own, int) and not isinstance(own, bool):
        return str(own)
    if own is not None and own != "":
        raise BadRow(content_id(raw, fmt), "malformed_row", f"id must be a string or an integer, got {own!r}")
    return content_id({k: v for k, v in raw.items() if k != "id"}, fmt)


def to_row(raw: dict[str, Any], source: DataSource, check_image: bool = True) -> VQARow:
    """Validate one raw record into a VQARow, or raise BadRow naming the reason."""
    if raw.get("_malformed"):
        raise BadRow(str(raw.get("id")), "malformed_row", raw["_malformed"])  # its id is its file:line
    row_id = record_id(raw, source.format)
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


@dataclass(frozen=True)
class Checked:
    """One input record after the checks: a good row, or the reason it was rejected."""

    id: str
    row: VQARow | None
    reason: str | None = None
    detail: str = ""


def check_record(raw: dict[str, Any], source: DataSource, check_image: bool = True) -> Checked:
    try:
        row = to_row(raw, source, check_image=check_image)
    except BadRow as err:
        return Checked(err.row_id, None, err.reason, err.detail)
    return Checked(row.id, row)


KEEP, SKIP, DUPLICATE = "keep", "skip", "duplicate"  # RowSelector.admit's verdicts


class RowSelector:
    """What both read paths apply to checked records, in input order: the records up to and including the
    `offset`-th good row are skipped (they belong to another slice of the source, which reports their bad rows),
    a record whose id an earlier record already has is rejected as `duplicate_id` (ids join rollouts, rewards and
    pairs: two questions under one id would be paired with each other's chains), and reading stops once `limit`
    good rows are in."""

    def __init__(self, limit: int | None, offset: int = 0):
        self.limit, self.offset, self.good, self.skipped, self.seen = limit, offset, 0, 0, set()

    @property
    def done(self) -> bool:
        return self.limit is not None and self.good >= self.limit

    def admit(self, row_id: str, good: bool) -> str:
        """KEEP, SKIP (before the offset: neither output nor counted) or DUPLICATE (the caller rejects the record
        as `duplicate_id`)."""
        taken = row_id in self.seen
        self.seen.add(row_id)
        if self.skipped < self.offset:
            self.skipped += good and not taken
            return SKIP
        if taken:
            return DUPLICATE
        self.good += good
        return KEEP


def duplicate(row_id: str) -> Checked:
    return Checked(row_id, None, DUPLICATE_ID, "an earlier record has this id")


def log_rejected(checked: Checked) -> None:
    log.warning("skipping bad row %s: %s%s", checked.id, checked.reason, f" ({checked.detail})" if checked.detail else "")


def iter_checked(source: DataSource, check_image: bool = True) -> Iterator[Checked]:
    """Every record of `source` in order, good or rejected with its reason, until `source.limit` good rows.

    `check_image=False` skips decoding the images (fields only): for statistics over the rows, never for
    selecting rows other stages join on, since with a limit or an offset a row with a bad image shifts the
    selection."""
    selector = RowSelector(source.limit, source.offset)
    for raw in iter_raw(source):
        if selector.done:
            return
        checked = check_record(raw, source, check_image)
        verdict = selector.admit(checked.id, checked.row is not None)
        if verdict != SKIP:
            yield checked if verdict == KEEP else duplicate(checked.id)


def iter_rows(source: DataSource, bad: Counter | None = None, check_image: bool = True) -> Iterator[VQARow]:
    """Good rows in order, up to `source.limit`; each bad row is logged and counted in `bad` by reason."""
    for checked in iter_checked(source, check_image):
        if checked.row is not None:
            yield checked.row
            continue
        log_rejected(checked)
        if bad is not None:
            bad[checked.reason] += 1


class NoGoodRow(ValueError):
    """A source whose first records hold no valid row; the message counts the reasons."""


def first_good_row(source: DataSource, scan: int = 1000) -> VQARow:
    """The source's first valid row, looking at no more than `scan` records (a preflight check, not a read)."""
    reasons: Counter = Counter()
    first_bad: Checked | None = None
    for checked in itertools.islice(iter_checked(source), scan):
        if checked.row is not None:
            return checked.row
        reasons[checked.reason] += 1
        first_bad = first_bad or checked
    if first_bad is None:
        raise NoGoodRow("it holds no records")
    counts = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
    example = f"{first_bad.id}: {first_bad.reason}" + (f" ({first_bad.detail[:200]})" if first_bad.detail else "")
    which = "its" if sum(reasons.values()) < scan else f"its first {scan}"
    raise NoGoodRow(f"none of {which} records is a valid row ({counts}; first: {example})")
