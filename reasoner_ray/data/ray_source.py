"""Stream any supported data source into a Ray Dataset, validating rows inside Ray tasks.

Reading happens in Ray tasks too: JSONL and LLaVA files through `ray.data.read_text`, Parquet through
`ray.data.read_parquet`; only easy-VQA's light index (questions and image *paths*) is enumerated by the driver.
Decoding and checking images happens in `map_batches` tasks, so no image set is ever materialised in the
driver. Every record comes out either as a good row or as a rejected one with its reason.

Dataset columns: `id`, `row` (the VQARow as JSON: one string column keeps Arrow schemas stable across the
heterogeneous fields), `reject_reason` (None for good rows) and `detail`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import pickle
from collections import Counter
from collections.abc import Callable
from typing import Any

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.readers import BadRow, iter_raw, llava_line_to_raw, parse_json_line, to_row

log = logging.getLogger(__name__)

_LIGHT_TASK = {"num_cpus": 0.25}  # cheap work; leaves CPUs for the actors of later stages on a 2-CPU node


def _validate(raw: dict[str, Any], source: DataSource) -> dict[str, Any]:
    try:
        row = to_row(raw, source)
    except BadRow as err:
        log.warning("skipping bad row %s: %s %s", err.row_id, err.reason, err.detail)
        return {"id": err.row_id, "row": None, "reject_reason": err.reason, "detail": err.detail}
    return {"id": row.id, "row": row.model_dump_json(), "reject_reason": None, "detail": ""}


def _raw_from_pickled(rec: dict[str, Any]) -> dict[str, Any]:
    return pickle.loads(rec["raw"])


def _raw_from_text(parse: Callable[[str, str, DataSource], dict[str, Any]]):
    def raw(rec: dict[str, Any], source: DataSource) -> dict[str, Any]:
        line = rec["text"]
        digest = hashlib.sha256(line.encode()).hexdigest()[:12]  # stable id for a line with none of its own
        return parse(line, f"{rec.get('path', 'line')}:{digest}", source)

    return raw


def _parquet_raw(rec: dict[str, Any]) -> dict[str, Any]:
    return dict(rec)


def _driver_items(source: DataSource):
    import ray

    raw = itertools.islice(iter_raw(source), source.limit)  # islice(None) = all
    return ray.data.from_items([{"raw": pickle.dumps(r)} for r in raw]), lambda rec, _src: _raw_from_pickled(rec)


def _text_files(parse):
    def read(source: DataSource):
        import ray

        ds = ray.data.read_text(source.path, include_paths=True, drop_empty_lines=True, file_extensions=["jsonl", "json"])
        return ds, _raw_from_text(parse)

    return read


def _parquet_files(source: DataSource):
    import ray

    return ray.data.read_parquet(source.path, file_extensions=["parquet"]), lambda rec, _src: _parquet_raw(rec)


# format -> function(source) -> (dataset of raw-ish records, function turning one record into a raw dict)
RAY_READERS = {
    "easy_vqa": _driver_items,
    "digits": _driver_items,  # generated in the driver: a few KB of PNG per question
    "jsonl": _text_files(lambda line, loc, _src: parse_json_line(line, loc)),
    "llava": _text_files(llava_line_to_raw),
    "parquet": _parquet_files,
}


def read_dataset(source: DataSource):
    """All records of `source` (good and bad), validated in Ray tasks; `source.limit` caps records read."""
    ds, to_raw = RAY_READERS[source.format](source)
    if source.limit is not None:
        ds = ds.limit(source.limit)

    def validate(rec: dict[str, Any]) -> dict[str, Any]:
        return _validate(to_raw(rec, source), source)

    return ds.map(validate, **_LIGHT_TASK)


def good_rows(ds):
    return ds.filter(lambda r: r["reject_reason"] is None, **_LIGHT_TASK)


def split_counts(ds) -> tuple[int, Counter]:
    """(good rows, bad rows by reason) of a validated dataset."""
    counts: Counter = Counter()
    for rec in ds.select_columns(["reject_reason"]).iter_rows():
        counts[rec["reject_reason"] or "ok"] += 1
    good = counts.pop("ok", 0)
    return good, counts


def row_from_record(record: dict[str, Any]) -> VQARow:
    return VQARow.model_validate_json(record["row"])
