"""Read any supported data source into a Ray Dataset, checking rows (decoding images) in Ray tasks.

The records come from the same reader as the in-process path (`readers.iter_raw`, in a fixed order), go through
the same `to_row()` inside Ray tasks, and the same `RowSelector` (`offset`, duplicate ids, `limit` good rows) decides in
the driver. So this and `readers.iter_rows` return the same rows under the same ids, with the same rejections:
other stages can join on them (the pairs stage re-reads the questions the rollouts read).

Records are sent in windows: each window's records go to Ray tasks, which decode the images in parallel and
keep the checked rows in the object store; only (index, id, reason) of each comes back to the driver, where the
selector runs in input order. With a limit, reading stops at the window that completes it, and a window is
sized to what is still missing, so a small limit on a large source checks little more than it keeps.

Dataset columns: `id`, `row` (the VQARow as JSON: one string column keeps Arrow schemas stable across the
heterogeneous fields), `reject_reason` (None for good rows) and `detail`. Every record read comes out once,
good or rejected; records after the limit's last good row are not read.
"""

from __future__ import annotations

import itertools
import pickle
from collections import Counter
from typing import Any

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.readers import (
    DUPLICATE_ID,
    KEEP,
    SKIP,
    Checked,
    RowSelector,
    check_record,
    duplicate,
    iter_raw,
    log_rejected,
)

_LIGHT_TASK = {"num_cpus": 0.25}  # cheap work; leaves CPUs for the actors of later operators on a 2-CPU node
WINDOW = 4096  # records per round trip when no limit bounds the read
_RECORDS_PER_BLOCK = 256  # a few tasks per window, not one per record
COLUMNS = ("id", "row", "reject_reason", "detail")


def _check(rec: dict[str, Any], source: DataSource) -> dict[str, Any]:
    checked = check_record(pickle.loads(rec["raw"]), source)
    return {"index": rec["index"], "id": checked.id, "row": checked.row.model_dump_json() if checked.row else None,
            "reject_reason": checked.reason, "detail": checked.detail}


def _window_size(selector: RowSelector) -> int:
    if selector.limit is None:
        return WINDOW
    missing = selector.limit - selector.good + selector.offset - selector.skipped
    return min(WINDOW, missing + missing // 8 + 16)  # a little over: some records may be bad


def _keep(decisions: dict[int, str | None]):
    """Per row of a checked window: drop it (past the limit) or keep it, with `duplicate_id` where decided."""

    def apply(rec: dict[str, Any]) -> list[dict[str, Any]]:
        index = rec["index"]
        if index not in decisions:
            return []
        out = {k: rec[k] for k in COLUMNS}
        if decisions[index] == DUPLICATE_ID:
            dup = duplicate(rec["id"])
            out.update(row=None, reject_reason=dup.reason, detail=dup.detail)
        return [out]

    return apply


def read_dataset(source: DataSource):
    """Every record of `source` read (good and bad), checked in Ray tasks, up to `source.limit` good rows."""
    import ray

    selector = RowSelector(source.limit, source.offset)
    raws = iter_raw(source)
    windows = []
    while not selector.done:
        window = list(itertools.islice(raws, _window_size(selector)))
        if not window:
            break
        items = [{"index": i, "raw": pickle.dumps(raw)} for i, raw in enumerate(window)]
        checked = ray.data.from_items(items, override_num_blocks=-(-len(items) // _RECORDS_PER_BLOCK)) \
            .map(_check, fn_kwargs={"source": source}, **_LIGHT_TASK).materialize()
        heads = sorted(checked.select_columns(["index", "id", "reject_reason", "detail"]).take_all(),
                       key=lambda r: r["index"])
        decisions: dict[int, str | None] = {}
        for head in heads:
            if selector.done:
                break
            outcome = Checked(head["id"], None, head["reject_reason"], head["detail"])
            verdict = selector.admit(head["id"], head["reject_reason"] is None)
            if verdict == SKIP:
                continue
            if verdict != KEEP:
                outcome = duplicate(head["id"])
            decisions[head["index"]] = outcome.reason if outcome.reason == DUPLICATE_ID else None
            if outcome.reason is not None:
                log_rejected(outcome)  # here, in input order, only for records that count
        windows.append(checked.flat_map(_keep(decisions), **_LIGHT_TASK))
    if not windows:
        import pyarrow as pa

        return ray.data.from_arrow(pa.table({c: pa.array([], pa.string()) for c in COLUMNS}))
    return windows[0].union(*windows[1:]) if len(windows) > 1 else windows[0]


def good_rows(ds):
    from ray.data.expressions import col

    return ds.filter(expr=col("reject_reason").is_null(), **_LIGHT_TASK)


def split_counts(ds) -> tuple[int, Counter]:
    """(good rows, bad rows by reason) of a checked dataset."""
    counts: Counter = Counter()
    for rec in ds.select_columns(["reject_reason"]).iter_rows():
        counts[rec["reject_reason"] or "ok"] += 1
    good = counts.pop("ok", 0)
    return good, counts


def row_from_record(record: dict[str, Any]) -> VQARow:
    return VQARow.model_validate_json(record["row"])
