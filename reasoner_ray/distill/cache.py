"""A durable response cache: one JSON file per request key, written so a SIGKILL can never leave a torn file.

Layout: `<folder>/<key[:2]>/<key>.json`. The folder is a path or a pyarrow filesystem URI (`s3://`, `gs://`,
`file://`), the same kinds `run.dir` takes, so the default `<run.dir>/cache/teacher` is on the run's own storage.

On a local or mounted path (one machine, NFS, a shared volume; `file://` URIs too), a write goes to a temporary
file in the same folder, is fsynced, then `os.replace`d onto its final name (atomic on POSIX) and the folder is
fsynced, so a reader sees either no file or a whole one; leftover temporary files of a killed writer are ignored
and swept by `sweep_partial()`. On an object store there is no rename and no need for one: an object is written
by one request and becomes visible whole when it completes, or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reasoner_ray.storage import write_atomic

_TMP_PREFIX = ".partial-"


class ResponseCache:
    def __init__(self, folder: str | os.PathLike[str], filesystem=None):
        """`filesystem`: a pyarrow FileSystem holding `folder` (tests pass one); by default it comes from a URI."""
        location = str(folder)
        if filesystem is None and "://" in location:
            from pyarrow import fs

            filesystem, location = fs.FileSystem.from_uri(location)
            if isinstance(filesystem, fs.LocalFileSystem):
                filesystem = None  # a plain path after all: keep the atomic-rename writes
        self.store = filesystem
        self.folder = Path(location)
        if self.store is None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            if self.store is None:
                return json.loads(self.path(key).read_text())
            with self.store.open_input_stream(self.path(key).as_posix()) as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Cannot happen through put(); a file edited by hand is treated as absent and rewritten.
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        if self.store is not None:
            with self.store.open_output_stream(self.path(key).as_posix()) as fh:
                fh.write(json.dumps(record, ensure_ascii=False).encode())
            return
        final = self.path(key)
        write_atomic(final, json.dumps(record, ensure_ascii=False), tmp_prefix=_TMP_PREFIX)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def keys(self) -> set[str]:
        if self.store is not None:
            from pyarrow import fs

            found = self.store.get_file_info(fs.FileSelector(self.folder.as_posix(), recursive=True, allow_not_found=True))
            return {Path(info.path).stem for info in found if info.type == fs.FileType.File and info.path.endswith(".json")}
        return {p.stem for p in self.folder.glob("*/*.json")}

    def sweep_partial(self) -> int:
        """Delete temporary files left by killed writers; returns how many (none on an object store)."""
        if self.store is not None:
            return 0
        stale = list(self.folder.glob(f"*/{_TMP_PREFIX}*"))
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)
