"""TRL's dataset formats, both ways: this project's preference pairs and SFT examples as TRL's conversational
vision records, and TRL pairs made elsewhere as PreferenceRows the DPO stage trains on.

    preference: {"images": [image], "prompt": [user message], "chosen": [assistant message],
                 "rejected": [assistant message]}        (+ "id", "question", "chosen_score", "rejected_score",
                                                          "chosen_truncated", "rejected_truncated")
    SFT:        {"images": [image], "messages": [user message, assistant message]}       (+ "id")

Messages use the content-part shape TRL and transformers chat templates take ({"type": "image"} where the image
goes, {"type": "text", "text": ...}). Parquet files are written with `datasets`, so the image column is an
`Image()` feature (bytes embedded) that `datasets.load_dataset("parquet", ...)` decodes to PIL; JSONL files carry
image paths (images that exist only as bytes are written next to the file). A plain string prompt or response
(TRL's standard format) is read too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reasoner_ray.core.prompts import assistant_message, user_message
from reasoner_ray.core.rows import ImageRef, PreferenceRow
from reasoner_ray.data.images import image_bytes, parse_image_field

TRL_PAIR_KEYS = ("prompt", "chosen", "rejected")


def is_trl_pair(rec: dict[str, Any]) -> bool:
    return all(k in rec for k in TRL_PAIR_KEYS) and "question_id" not in rec


def pair_to_trl(pair: PreferenceRow) -> dict[str, Any]:
    return {"id": pair.question_id, "question": pair.question, "images": [pair.image], "prompt": pair.messages,
            "chosen": [assistant_message(pair.chosen)], "rejected": [assistant_message(pair.rejected)],
            "chosen_score": pair.chosen_score, "rejected_score": pair.rejected_score,
            # a chain cut before its end is trained without an end of turn (core/pairs.py); kept for a round trip
            "chosen_truncated": pair.chosen_truncated, "rejected_truncated": pair.rejected_truncated}


def sft_to_trl(example: dict[str, Any]) -> dict[str, Any]:
    """An SFT example of train/data.py (id, image, messages, response) as TRL's messages record."""
    return {"id": example["id"], "images": [example["image"]],
            "messages": [*example["messages"], assistant_message(example["response"])]}


def _text(value: Any) -> str:
    """The text of a string, a message, or a list of messages (the last message's text parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1]
    if isinstance(value, dict):
        content = value.get("content")
        if isinstance(content, str):
            return content
        return "".join(p.get("text") or "" for p in content or [] if p.get("type") == "text")
    raise ValueError(f"expected a string or chat messages, got {type(value).__name__}")


def _clean(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the null keys Parquet adds when it unifies message parts ({"type": "image", "text": None})."""
    return [{**m, "content": [{k: v for k, v in part.items() if v is not None} for part in m["content"]]}
            if isinstance(m.get("content"), list) else m for m in messages]


def _image(value: Any) -> ImageRef:
    if hasattr(value, "save"):  # a PIL image (a dataset loaded with `datasets`)
        import io

        buf = io.BytesIO()
        value.save(buf, format="PNG")
        value = buf.getvalue()
    return parse_image_field(value)


def trl_to_pair(rec: dict[str, Any]) -> PreferenceRow:
    """A TRL preference record (conversational or standard, one image) as a PreferenceRow."""
    images = rec.get("images") or ([rec["image"]] if rec.get("image") is not None else [])
    if len(images) != 1:
        raise ValueError(f"a pair needs exactly one image, this one has {len(images)}")
    prompt = rec["prompt"]
    question = rec.get("question") or _text(prompt)
    messages = _clean(prompt) if isinstance(prompt, list) else [user_message(question)]
    question_id = rec.get("id")
    if question_id is None:
        question_id = "trl-" + hashlib.sha256(json.dumps([question, _text(rec["chosen"]), _text(rec["rejected"])])
                                             .encode()).hexdigest()[:16]
    return PreferenceRow(question_id=str(question_id), question=question, image=_image(images[0]), messages=messages,
                         chosen=_text(rec["chosen"]), rejected=_text(rec["rejected"]),
                         chosen_score=float(rec.get("chosen_score", 1.0)), rejected_score=float(rec.get("rejected_score", 0.0)),
                         chosen_truncated=bool(rec.get("chosen_truncated", False)),
                         rejected_truncated=bool(rec.get("rejected_truncated", False)))


def _jsonable(rec: dict[str, Any], image_dir: Path) -> dict[str, Any]:
    paths = []
    for i, ref in enumerate(rec["images"]):
        if ref.path:
            paths.append(str(Path(ref.path).resolve()))
            continue
        image_dir.mkdir(parents=True, exist_ok=True)
        name = image_dir / f"{hashlib.sha256(str(rec['id']).encode()).hexdigest()[:16]}-{i}.png"
        name.write_bytes(image_bytes(ref))
        paths.append(str(name.resolve()))
    return {**rec, "images": paths}


def write_trl(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write TRL records (pair_to_trl / sft_to_trl) as `.parquet` (images embedded) or `.jsonl` (image paths)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = list(records)
    if path.suffix == ".parquet":
        from datasets import Dataset, Image, Sequence
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()  # one file, written in a blink: no progress bars on stderr

        rows = [{**r, "images": [{"bytes": image_bytes(ref), "path": None} for ref in r["images"]]} for r in records]
        Dataset.from_list(rows).cast_column("images", Sequence(Image())).to_parquet(str(path))
        return path
    if path.suffix != ".jsonl":
        raise ValueError(f"{path}: TRL files are .parquet or .jsonl")
    image_dir = path.with_name(path.stem + "_images")
    with path.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(_jsonable(rec, image_dir)) + "\n")
    return path
