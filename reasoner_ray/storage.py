"""Run-directory I/O on a local path or any pyarrow filesystem URI (s3://, gs://, file://).

Engines (vLLM, DeepSpeed, transformers) need local files, so every stage works in a local mirror of the run
directory; for a URI, a stage's folder is pulled before it runs and pushed after it completes, and the manifest
is written last. A push mirrors the folder: remote files the local folder no longer has (the output of an earlier
attempt killed after or during its push) are deleted first, so the remote stage never holds two attempts' files.
For a plain local path the mirror *is* the run directory and nothing is copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from reasoner_ray.core.rundir import Manifest, stage_dir
from reasoner_ray.paths import project_dirs

MANIFEST = "manifest.json"


def _is_uri(location: str) -> bool:
    return "://" in location


def write_atomic(path: Path, data: str | bytes, tmp_prefix: str | None = None) -> None:
    """Write via a temp file + fsync + rename, so a SIGKILL leaves either the old or the new file (and a failed
    write no temp file). `tmp_prefix` names the temp file for a folder whose reader skips or sweeps such files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix or f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    def __init__(self, location: str, mirror_root: str | Path | None = None):
        self.location = location
        if _is_uri(location):
            from pyarrow import fs

            self.fs, self.remote_root = fs.FileSystem.from_uri(location)
            key = hashlib.sha256(location.encode()).hexdigest()[:12]
            self.root = Path(mirror_root or Path(project_dirs()["tmp"]) / "run-mirrors").resolve() / key
        else:
            self.fs, self.remote_root = None, None
            self.root = Path(location).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # --- paths -----------------------------------------------------------------------------------------
    def path(self, stage: str) -> Path:
        return self.root / stage_dir(stage)

    def output(self, stage: str) -> Path:
        return self.path(stage) / "output"

    def work(self, stage: str) -> Path:
        return self.path(stage) / "work"

    # --- manifest --------------------------------------------------------------------------------------
    def load_manifest(self) -> Manifest:
        if self.fs is not None:
            self._pull_file(MANIFEST)
        path = self.root / MANIFEST
        manifest = Manifest.model_validate_json(path.read_text()) if path.is_file() else Manifest()
        if manifest.renamed():
            self.migrate(manifest)
        return manifest

    def migrate(self, manifest: Manifest) -> None:
        """Move stages an older version recorded under retired names (rundir.RENAMED) to their new names and
        folders, folders first, then the manifest: a kill in between leaves the old manifest naming the old
        stage, whose folder the next open moves again (a move that already happened is skipped)."""
        for old, new, old_folder in manifest.renamed():
            if self.fs is not None:
                self._pull_dir(old_folder)
            source, target = self.root / old_folder, self.path(new)
            if source.is_dir() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(source, target)
                with contextlib.suppress(OSError):  # the old parent (eval/), once nothing else is in it
                    source.parent.rmdir()
            if self.fs is not None:
                self._push(stage_dir(new))
                self.fs.delete_dir_contents(self._remote(old_folder), missing_dir_ok=True)
            manifest.rename(old, new)
        self.save_manifest(manifest)

    def save_manifest(self, manifest: Manifest) -> None:
        write_atomic(self.root / MANIFEST, manifest.model_dump_json(indent=2))
        if self.fs is not None:
            self._push(MANIFEST)

    # --- stage lifecycle -------------------------------------------------------------------------------
    def begin(self, stage: str) -> None:
        """Prepare an unfinished stage: pull its folder (URI), clear partial output, keep work/."""
        if self.fs is not None:
            self._pull_dir(stage_dir(stage))
        shutil.rmtree(self.output(stage), ignore_errors=True)
        self.output(stage).mkdir(parents=True, exist_ok=True)
        self.work(stage).mkdir(parents=True, exist_ok=True)

    def commit(self, stage: str) -> None:
        """Push a completed stage's folder (URI); the caller then records it in the manifest."""
        if self.fs is not None:
            self._push(stage_dir(stage))

    def reset(self, stage: str) -> None:
        """Delete a stage's folder, output and work, here and (URI) in the remote run directory."""
        shutil.rmtree(self.path(stage), ignore_errors=True)
        if self.fs is not None:
            self.fs.delete_dir_contents(self._remote(stage_dir(stage)), missing_dir_ok=True)

    def stages_on_disk(self) -> list[str]:
        """Every stage with a folder in the local run directory (completed or not)."""
        from reasoner_ray.core.rundir import stage_of_folder

        found = []
        depths = ("*", "*/*", "*/*/*")  # distill/, eval/sft/ (older runs), rounds/r1/dpo/: never inside a stage
        for folder in sorted(p for d in depths for p in self.root.glob(d) if p.is_dir() and (p / "work").is_dir()):
            stage = stage_of_folder(folder.relative_to(self.root).as_posix())
            if stage is not None:
                found.append(stage)
        return found

    def ensure_local(self, stage: str) -> None:
        """Make a completed stage's output available locally (after a restart on another node)."""
        if self.fs is not None and not self.output(stage).exists():
            self._pull_dir(stage_dir(stage))

    def write_json(self, relpath: str, obj: Any) -> Path:
        path = self.root / relpath
        write_atomic(path, json.dumps(obj, indent=2, default=str))
        return path

    # --- remote sync -----------------------------------------------------------------------------------
    def _remote(self, rel: str) -> str:
        return f"{self.remote_root.rstrip('/')}/{rel}"

    def _push(self, rel: str) -> None:
        from pyarrow import fs

        local = self.root / rel
        if local.is_dir():
            self._delete_remote_extras(local, rel)
            fs.copy_files(str(local), self._remote(rel), source_filesystem=fs.LocalFileSystem(), destination_filesystem=self.fs)
        elif local.is_file():
            self.fs.create_dir(self._remote(rel).rsplit("/", 1)[0], recursive=True)
            fs.copy_files(str(local), self._remote(rel), source_filesystem=fs.LocalFileSystem(), destination_filesystem=self.fs)

    def _delete_remote_extras(self, local: Path, rel: str) -> None:
        from pyarrow import fs

        remote = self._remote(rel).rstrip("/")
        keep = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
        for info in self.fs.get_file_info(fs.FileSelector(remote, recursive=True, allow_not_found=True)):
            if info.type == fs.FileType.File and info.path[len(remote) + 1:] not in keep:
                self.fs.delete_file(info.path)

    def _pull_dir(self, rel: str) -> None:
        from pyarrow import fs

        info = self.fs.get_file_info(self._remote(rel))
        if info.type == fs.FileType.Directory:
            fs.copy_files(self._remote(rel), str(self.root / rel), source_filesystem=self.fs, destination_filesystem=fs.LocalFileSystem())

    def _pull_file(self, rel: str) -> None:
        from pyarrow import fs

        info = self.fs.get_file_info(self._remote(rel))
        if info.type == fs.FileType.File:
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.copy_files(self._remote(rel), str(self.root / rel), source_filesystem=self.fs, destination_filesystem=fs.LocalFileSystem())
