"""Training inputs: read PreferenceRow files (JSONL or Parquet) and build the SFT mixture.

SFT input: VQARow rows, read by the data readers (`train.sft.sft_rows`). A row with `rationale` set yields a CoT
example (`cot_response(rationale, gold)`); with `sft.include_direct` every row also yields the direct form of
the same question (`direct_response`), as in the paper's mixture. A row without rationale yields only the
direct form (or nothing when direct examples are off: counted as `no_rationale`).

DPO input: PreferenceRow records, or TRL preference records (data/trl_format.py). Examples are plain dicts
(picklable, cheap to ship to Ray workers).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reasoner_ray.core.prompts import (
    cot_response,
    direct_response,
    gold_for_response,
    prompt_messages,
    user_message,
)
from reasoner_ray.core.rows import PreferenceRow, VQARow
from reasoner_ray.storage import write_atomic


class RowFileError(ValueError):
    """A training input file that cannot be read; names the file and line/row."""


def iter_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, record) per row of a .jsonl/.json or .parquet file (or a folder of them)."""
    path = Path(path)
    if not path.exists():
        raise RowFileError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json", ".parquet")) if path.is_dir() else [path]
    for f in files:
        if f.suffix == ".parquet":
            import pyarrow.parquet as pq

            for i, rec in enumerate(pq.read_table(f).to_pylist()):
                yield f"{f.name}:{i}", rec
            continue
        with f.open() as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield f"{f.name}:{n}", json.loads(line)
                    except json.JSONDecodeError as err:
                        raise RowFileError(f"{f.name}:{n}: invalid JSON ({err.msg})") from None


def read_rows(path: str | Path, row_type):
    """Rows of `row_type` from a file or folder; PreferenceRow files may also be in TRL's preference format."""
    from reasoner_ray.data.trl_format import is_trl_pair, trl_to_pair

    rows = []
    for loc, rec in iter_records(path):
        if row_type is PreferenceRow and is_trl_pair(rec):
            try:
                rows.append(trl_to_pair(rec))
            except (KeyError, ValueError, TypeError) as err:
                raise RowFileError(f"{loc}: not a TRL preference record: {err}") from None
            continue
        rec = {k: v for k, v in rec.items() if v is not None or k in ("rationale", "choices")}
        if isinstance(rec.get("image"), dict):  # parquet gives all three ImageRef keys, two of them null
            rec["image"] = {k: v for k, v in rec["image"].items() if v is not None}
        try:
            rows.append(row_type.model_validate(rec))
        except ValidationError as err:
            first = err.errors()[0]
            raise RowFileError(f"{loc}: not a {row_type.__name__}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return rows


def sft_examples(rows: list[VQARow], include_direct: bool, counts: Counter | None = None,
                 include_cot: bool = True) -> list[dict[str, Any]]:
    """The SFT mixture: one CoT example per row with a rationale (unless `include_cot` is off, the paper's
    direct-only ablation), plus the direct form when asked."""
    counts = counts if counts is not None else Counter()
    out: list[dict[str, Any]] = []
    for row in rows:
        made = 0
        if include_cot and row.rationale and row.rationale.strip():
            out.append({"id": f"{row.id}:cot", "image": row.image, "messages": prompt_messages(row, "cot"),
                        "response": cot_response(row.rationale, gold_for_response(row))})
            made += 1
        if include_direct:
            out.append({"id": f"{row.id}:direct", "image": row.image, "messages": prompt_messages(row, "direct"),
                        "response": direct_response(row)})
            made += 1
        counts["examples"] += made
        if not made:
            counts["no_rationale"] += 1
    return out


def preference_examples(rows: list[PreferenceRow]) -> list[dict[str, Any]]:
    return [
        {"id": f"{r.question_id}:{i}", "index": i, "image": r.image,
         "messages": r.messages or [user_message(r.question)], "chosen": r.chosen, "rejected": r.rejected,
         "chosen_truncated": r.chosen_truncated, "rejected_truncated": r.rejected_truncated,
         "ref_chosen_logp": r.ref_chosen_logp, "ref_rejected_logp": r.ref_rejected_logp}
        for i, r in enumerate(rows)
    ]


def write_rows(rows, path: str | Path) -> None:
    """JSONL (or Parquet by suffix) of row models, images kept by reference; written whole or not at all (a temp
    file renamed into place)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        # An empty mapping (a pair's `sampling` when nothing sampled it) has no Parquet type: left out, it reads back
        # as its default
        records = [{k: v for k, v in r.to_record().items() if v != {}} for r in rows]
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(records), buffer)
        write_atomic(path, buffer.getvalue())
    else:
        write_atomic(path, "".join(json.dumps(_json_safe(r).model_dump(mode="json")) + "\n" for r in rows))


def _json_safe(row):
    """Raw image bytes cannot go into JSON: carry them as a data URL (same bytes, no re-encoding)."""
    from reasoner_ray.data.images import to_data_url

    image = getattr(row, "image", None)
    if image is not None and image.data is not None:
        return row.model_copy(update={"image": type(image)(url=to_data_url(image))})
    return row
