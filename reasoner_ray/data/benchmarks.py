"""Readers for the paper's eight evaluation benchmarks, each in its official release layout and in the Hugging Face
parquet layout (lmms-lab / HuggingFaceM4 / AI4Math copies, images embedded as bytes).

`data.<train|eval>.format` names the benchmark and `path` points at what the user has on disk; the layout is
recognised from it (a `.parquet` file or a folder holding them -> parquet, else the official files). Every record
becomes a raw row for `readers.to_row`: the answer type picks the metric (reward registry) and the prompt wording
(core/prompts.py: letters for multiple choice, no unit or % for charts, a phrase copied from the image for
documents). Layouts, fields and splits follow each benchmark's own loading code and dataset card.

| format | official files (path) | images | answer type |
|---|---|---|---|
| aokvqa | aokvqa_v1p0_<split>.json (a list) | COCO: image_root/<split>2017/<image_id:012d>.jpg | multiple_choice |
| chartqa | test/ folder or test_{human,augmented}.json (list, or {"data": list}) | <folder>/png/<imgname> | relaxed |
| scienceqa | folder with problems.json + pid_splits.json; image questions only | images/<split>/<pid>/image.png | multiple_choice |
| ai2d | ai2d/ folder (questions/*.png.json, ai2d_test_ids.csv for split test) | images/<n>.png | multiple_choice |
| docvqa | val_v1.0.json ({"data": [...]}) | relative to the file's folder | anls |
| infovqa | infographicsVQA_val_v1.0_withQT.json | image_root (default <folder>/infographicsvqa_images) | anls |
| textvqa | TextVQA_0.5.1_val.json | image_root (default <folder>/train_images)/<image_id>.jpg | open (10-answer VQA accuracy) |
| mathvista | testmini.json (pid -> record) | relative to the file's folder | multiple_choice / mathvista |

Ids are `<benchmark>-<the benchmark's own question id>` where it has one, else `<benchmark>-<split>-<index>`
(a record without its id gets a content hash, readers.record_id). A multiple-choice gold is written as the
option's text, never its letter: AI2D has options that are themselves letters ("C", "A", "D", "B"), where a
letter gold would name two options. Image paths are made absolute here (from `image_root`, or the release
file's folder), so nothing joins `image_root` to them a second time. A parquet folder must hold files of the
requested split (by file-name prefix or folder name); one that does not is refused, naming the split.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from reasoner_ray.core.config import DataSource

# DataSource.split -> the names the releases use for it.
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",), "testmini": ("testmini",)}


def _option(choices: Any, index: Any) -> str | None:
    """The text of option `index` (a multiple-choice gold), or None when it names no option."""
    try:
        i = int(index)
    except (TypeError, ValueError):
        return None
    return str(choices[i]) if isinstance(choices, (list, tuple)) and 0 <= i < len(choices) else None


def _parquet_files(source: DataSource) -> list[Path] | None:
    """The parquet files of the split when `path` is parquet (a file, or a folder of shards), else None."""
    path = Path(source.path or "")
    if path.is_file():
        return [path] if path.suffix == ".parquet" else None
    if not path.is_dir():
        raise FileNotFoundError(f"data path {source.path} does not exist")
    files = sorted(path.rglob("*.parquet"))
    if not files:
        return None
    names = SPLIT_NAMES[source.split]
    of_split = [f for f in files if any(f.name.startswith(f"{n}-") or f.stem == n or n in f.relative_to(path).parts[:-1]
                                        for n in names)]
    if not of_split:
        shown = ", ".join(str(f.relative_to(path)) for f in files[:5]) + (", ..." if len(files) > 5 else "")
        raise FileNotFoundError(f"no parquet file of split {source.split} ({' or '.join(names)}) in {source.path}; "
                                f"it holds {shown}")
    return of_split


def _parquet_rows(files: list[Path]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=64):
            yield from batch.to_pylist()


def _load_json(path: Path) -> Any:
    with path.open() as fh:
        return json.load(fh)


def _records(doc: Any) -> list[Any]:
    """A release file's records: a list, or a dict holding them under `data` (DocVQA, TextVQA, some ChartQA)."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return doc["data"]
    if isinstance(doc, list):
        return doc
    raise ValueError("expected a JSON list or an object with a `data` list")


def _json_file(source: DataSource, patterns: Iterable[str]) -> Path:
    """`path` itself when it is a file, else the first file in the folder matching a pattern."""
    path = Path(source.path or "")
    if path.is_file():
        return path
    for pattern in patterns:
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    raise FileNotFoundError(f"no {' or '.join(patterns)} in {source.path}")


def _row(bench: str, rid: Any, image: Any, question: Any, answer: Any, answer_type: str, **extra: Any) -> dict[str, Any]:
    return {"id": None if rid is None else f"{bench}-{rid}", "image": image, "question": question, "answer": answer,
            "answer_type": answer_type, "source": bench, **extra}


def _image_path(root: Path, relative: str) -> str:
    """An absolute path: to_row would join a relative one to image_root again."""
    return str((root / relative).absolute())


# --- A-OKVQA ------------------------------------------------------------------------------------------------

def read_aokvqa(source: DataSource) -> Iterator[dict[str, Any]]:
    def row(rec: dict[str, Any], image: Any) -> dict[str, Any]:
        return _row("aokvqa", rec.get("question_id"), image, rec.get("question"),
                    _option(rec.get("choices"), rec.get("correct_choice_idx")), "multiple_choice", choices=rec.get("choices"))

    files = _parquet_files(source)
    if files is not None:
        for rec in _parquet_rows(files):
            yield row(rec, rec.get("image"))
        return
    doc = _records(_load_json(_json_file(source, [f"aokvqa_v1p0_{n}.json" for n in SPLIT_NAMES[source.split]])))
    coco = Path(source.image_root or Path(source.path or "").parent)
    coco_split = {"validation": "val"}.get(source.split, source.split)
    for rec in doc:
        name = f"{int(rec.get('image_id', -1)):012d}.jpg"
        folder = coco / f"{coco_split}2017"
        yield row(rec, _image_path(folder if folder.is_dir() else coco, name))


# --- ChartQA ------------------------------------------------------------------------------------------------

def _chart_kind(text: str) -> str:
    return "augmented" if "augmented" in text else "human"


def read_chartqa(source: DataSource) -> Iterator[dict[str, Any]]:
    files = _parquet_files(source)
    if files is not None:
        for i, rec in enumerate(_parquet_rows(files)):
            kind = _chart_kind(str(rec.get("type") or ""))
            yield _row("chartqa", f"{source.split}-{i}", rec.get("image"), rec.get("question"),
                       rec.get("answer"), "relaxed", tags=[f"chartqa:{kind}"])
        return
    path = Path(source.path or "")
    names = [n for s in SPLIT_NAMES[source.split] for n in (f"{s}_human.json", f"{s}_augmented.json")]
    jsons = [path] if path.is_file() else [path / n for n in names if (path / n).is_file()]
    if not jsons:
        raise FileNotFoundError(f"no {' or '.join(names)} in {source.path}")
    for file in jsons:
        kind = _chart_kind(file.name)
        images = Path(source.image_root) if source.image_root else file.parent / "png"
        for i, rec in enumerate(_records(_load_json(file))):
            yield _row("chartqa", f"{kind}-{i}", _image_path(images, str(rec.get("imgname", ""))), rec.get("query"),
                       rec.get("label"), "relaxed", tags=[f"chartqa:{kind}"])


# --- ScienceQA (image questions) ----------------------------------------------------------------------------

def _with_context(question: Any, hint: Any) -> Any:
    return f"Context: {hint}\n{question}" if isinstance(hint, str) and hint.strip() and isinstance(question, str) else question


def read_scienceqa(source: DataSource) -> Iterator[dict[str, Any]]:
    files = _parquet_files(source)
    if files is not None:
        for i, rec in enumerate(_parquet_rows(files)):
            if not _has_image(rec.get("image")):
                continue  # a text-only question: not part of SQA-IMG, as in the official layout below
            yield _row("scienceqa", f"{source.split}-{i}", rec.get("image"),
                       _with_context(rec.get("question"), rec.get("hint")), _option(rec.get("choices"), rec.get("answer")),
                       "multiple_choice", choices=rec.get("choices"))
        return
    folder = Path(source.path or "")
    problems = _load_json(folder / "problems.json")
    splits = _load_json(folder / "pid_splits.json")
    split = next((n for n in SPLIT_NAMES[source.split] if n in splits), None)
    if split is None:
        raise ValueError(f"pid_splits.json has no split {source.split!r} (it has {sorted(splits)})")
    images = Path(source.image_root) if source.image_root else folder / "images"
    for pid in splits[split]:
        rec = problems.get(str(pid)) or {}
        if not rec.get("image"):
            continue  # the paper evaluates the image questions (SQA-IMG); text-only questions are not rows
        yield _row("scienceqa", pid, _image_path(images / split / str(pid), rec["image"]),
                   _with_context(rec.get("question"), rec.get("hint")), _option(rec.get("choices"), rec.get("answer")),
                   "multiple_choice", choices=rec.get("choices"))


def _has_image(value: Any) -> bool:
    """A parquet image cell that holds an image (the HF struct {bytes, path} with either set, bytes, a path)."""
    if isinstance(value, dict):
        return bool(value.get("bytes") or value.get("path"))
    return bool(value)


# --- AI2D ---------------------------------------------------------------------------------------------------

def read_ai2d(source: DataSource) -> Iterator[dict[str, Any]]:
    files = _parquet_files(source)
    if files is not None:
        for i, rec in enumerate(_parquet_rows(files)):
            yield _row("ai2d", f"{source.split}-{i}", rec.get("image"), rec.get("question"),
                       _option(rec.get("options"), rec.get("answer")), "multiple_choice", choices=rec.get("options"))
        return
    folder = Path(source.path or "")
    ids_file = folder / "ai2d_test_ids.csv"
    wanted = None
    if source.split == "test":
        if not ids_file.is_file():
            raise FileNotFoundError(f"split test needs {ids_file} (one image id per line)")
        wanted = {line.strip().split(",")[0] for line in ids_file.read_text().splitlines() if line.strip()}
    images = Path(source.image_root) if source.image_root else folder / "images"
    for qfile in sorted((folder / "questions").glob("*.json"), key=lambda p: (len(p.name), p.name)):
        image_name = qfile.name.removesuffix(".json")
        if wanted is not None and image_name.removesuffix(".png") not in wanted:
            continue
        doc = _load_json(qfile)
        for text, q in (doc.get("questions") or {}).items():
            yield _row("ai2d", q.get("questionId"), _image_path(images, doc.get("imageName", image_name)), text,
                       _option(q.get("answerTexts"), q.get("correctAnswer")), "multiple_choice",
                       choices=q.get("answerTexts"))


# --- DocVQA, InfographicVQA, TextVQA ------------------------------------------------------------------------

def _document_reader(bench: str, answer_type: str, patterns: list[str], image_of: Callable[[dict, Path, DataSource], str],
                     id_key: str) -> Callable[[DataSource], Iterator[dict[str, Any]]]:
    def read(source: DataSource) -> Iterator[dict[str, Any]]:
        files = _parquet_files(source)
        if files is not None:
            for rec in _parquet_rows(files):
                yield _row(bench, rec.get(id_key), rec.get("image"), rec.get("question"), rec.get("answers"),
                           answer_type)
            return
        file = _json_file(source, patterns)
        for rec in _records(_load_json(file)):
            yield _row(bench, rec.get(id_key), image_of(rec, file.parent, source), rec.get("question"),
                       rec.get("answers"), answer_type)

    return read


def _root(source: DataSource, default: Path) -> Path:
    return Path(source.image_root) if source.image_root else default


read_docvqa = _document_reader(
    "docvqa", "anls", ["val_v1.0_withQT.json", "val_v1.0.json", "*_v1.0*.json"],
    lambda rec, folder, source: _image_path(_root(source, folder), str(rec.get("image", ""))), "questionId")
read_infovqa = _document_reader(
    "infovqa", "anls", ["infographicsVQA_val*.json", "infographicVQA_val*.json", "*.json"],
    lambda rec, folder, source: _image_path(_root(source, folder / "infographicsvqa_images"),
                                            str(rec.get("image_local_name", ""))), "questionId")
read_textvqa = _document_reader(
    "textvqa", "open", ["TextVQA_0.5.1_val.json", "TextVQA_*.json"],
    lambda rec, folder, source: _image_path(_root(source, folder / "train_images"), f"{rec.get('image_id', '')}.jpg"),
    "question_id")


# --- MathVista ----------------------------------------------------------------------------------------------

def mathvista_row(rec: dict[str, Any], image: Any) -> dict[str, Any]:
    """Multiple choice: the gold is the choice's text (a gold that is none of the choices is no gold). Free form:
    the `mathvista` type (MathVista's own scorer, with the gold's decimals as its `precision`; docs/evaluation.md says
    where that differs from the record's `precision` field). The unit, when there is one, is said in the question."""
    question, answer, choices = rec.get("question"), rec.get("answer"), rec.get("choices")
    tags = [f"mathvista:{rec.get('question_type')}", f"mathvista:{rec.get('answer_type') or 'text'}"]
    if rec.get("question_type") == "multi_choice" and choices:
        gold = answer if answer in choices else None
        return _row("mathvista", rec.get("pid"), image, question, gold, "multiple_choice", choices=choices, tags=tags)
    if rec.get("unit") and isinstance(question, str):
        question = f"{question} (Unit: {rec['unit']})"
    return _row("mathvista", rec.get("pid"), image, question, answer, "mathvista", tags=tags)


def read_mathvista(source: DataSource) -> Iterator[dict[str, Any]]:
    files = _parquet_files(source)
    if files is not None:
        for rec in _parquet_rows(files):
            yield mathvista_row(rec, rec.get("decoded_image") or rec.get("image"))
        return
    file = _json_file(source, [f"{n}.json" for n in SPLIT_NAMES[source.split]])
    root = _root(source, file.parent)
    for pid, rec in _load_json(file).items():
        yield mathvista_row({"pid": pid, **rec}, _image_path(root, str(rec.get("image", ""))))


BENCHMARK_READERS: dict[str, Callable[[DataSource], Iterator[dict[str, Any]]]] = {
    "aokvqa": read_aokvqa, "chartqa": read_chartqa, "scienceqa": read_scienceqa, "ai2d": read_ai2d,
    "docvqa": read_docvqa, "infovqa": read_infovqa, "textvqa": read_textvqa, "mathvista": read_mathvista,
}
