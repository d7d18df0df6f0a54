"""What the stand-in teacher knows: every annotated question of a data source, indexed by image content.

A request carries only its image (as a data URL of the original bytes) and the question text, so the index maps
sha256(image bytes) to the image's questions. For easy-VQA it also gathers the shape and colour of each image
from all of its questions (`phrasing.gather_facts`), which is what lets the rationale describe the image.

For the digits and arithmetic sources the raw records carry the digits themselves (`_annotation`), kept per row.

Build: `AnnotationIndex.from_spec("easy_vqa:train")`, `"digits:train:8000"` (the first 8,000 questions) or
`"jsonl:/path/file.jsonl"` (format:path for files).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.prompts import question_text
from reasoner_ray.core.rows import VQARow
from reasoner_ray.data.images import ImageError, image_bytes
from reasoner_ray.data.readers import BadRow, iter_raw, to_row
from reasoner_ray.teacher.phrasing import gather_facts

log = logging.getLogger(__name__)


@dataclass
class ImageEntry:
    rows: list[VQARow] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, dict] = field(default_factory=dict)  # row id -> the source's own annotation

    def match(self, user_text: str) -> VQARow | None:
        """The row whose question (with options) the user text contains; the longest wins ("a" vs "a b")."""
        found = [r for r in self.rows if question_text(r) in user_text]
        return max(found, key=lambda r: len(question_text(r))) if found else None


GENERATED_SPLITS = {"easy_vqa": ("train", "test"), "digits": ("train", "validation", "test"),
                    "arithmetic": ("train", "validation", "test")}


def parse_spec(spec: str) -> DataSource:
    """`easy_vqa:train`, `digits:test[:limit]`, `jsonl:<path>`, `parquet:<path>`, `llava:<path>`."""
    fmt, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise ValueError(f"--data {spec!r}: expected <format>:<split or path>, e.g. easy_vqa:train")
    if fmt in GENERATED_SPLITS:
        split, _, limit = arg.partition(":")
        if split not in GENERATED_SPLITS[fmt] or (limit and not limit.isdigit()):
            raise ValueError(f"--data {spec!r}: expected {fmt}:<{'|'.join(GENERATED_SPLITS[fmt])}>[:<limit>]")
        return DataSource(format=fmt, split=split, limit=int(limit) if limit else None)
    return DataSource(format=fmt, path=arg)


class AnnotationIndex:
    def __init__(self) -> None:
        self.by_image: dict[str, ImageEntry] = {}
        self.skipped = 0

    @classmethod
    def from_spec(cls, spec: str) -> "AnnotationIndex":
        return cls.from_source(parse_spec(spec))

    @classmethod
    def from_source(cls, source: DataSource) -> "AnnotationIndex":
        index = cls()
        digest_of_path: dict[str, str] = {}  # easy-VQA asks ~10 questions per image file: hash each file once
        for n, raw in enumerate(iter_raw(source)):
            if source.limit is not None and n >= source.limit:
                break
            try:
                row = to_row(raw, source, check_image=False)
                path = row.image.path
                digest = digest_of_path.get(path) if path else None
                if digest is None:
                    digest = hashlib.sha256(image_bytes(row.image)).hexdigest()
                    if path:
                        digest_of_path[path] = digest
            except (BadRow, ImageError):
                index.skipped += 1
                continue
            entry = index.by_image.setdefault(digest, ImageEntry())
            entry.rows.append(row)
            if raw.get("_annotation"):
                entry.annotations[row.id] = raw["_annotation"]
        for entry in index.by_image.values():
            entry.facts = gather_facts((r.question, r.answers[0]) for r in entry.rows)
        log.info("teacher index: %d images, %d rows skipped", len(index.by_image), index.skipped)
        return index

    def lookup(self, image: bytes) -> ImageEntry | None:
        return self.by_image.get(hashlib.sha256(image).hexdigest())
