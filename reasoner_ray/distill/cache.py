"""A durable response cache: one JSON file per request key, written so a SIGKILL can never leave a torn file.

Layout: `<folder>/<key[:2]>/<key>.json`. A write goes to a temporary file in the same folder, is fsynced, then
`os.replace`d onto its final name (atomic on POSIX) and the folder is fsynced, so a reader sees either no file
or a whole one. The folder may be any path every node sees (a local folder on one machine, NFS or a shared
volume on a cluster). Leftover temporary files of a killed writer are ignored and swept by `sweep_partial()`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_TMP_PREFIX = ".partial-"


class ResponseCache:
    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Cannot happen through put(); a file edited by hand is treated as absent and rewritten.
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=final.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    def keys(self) -> set[str]:
        return {p.stem for p in self.folder.glob("*/*.json")}

    def sweep_partial(self) -> int:
        """Delete temporary files left by killed writers; returns how many."""
        stale = list(self.folder.glob(f"*/{_TMP_PREFIX}*"))
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)
