"""The project's own folders for caches and temporary files (`.cache/`, `.tmp/` at the repository root, or under
$REASONER_CACHE_ROOT): vLLM, torch's compiled extensions, Ray's temp folder and the jobs' fallback logs all go
there, so runs leave nothing behind elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_dirs(root: Path | None = None) -> dict[str, str]:
    root = root or Path(os.environ.get("REASONER_CACHE_ROOT", PROJECT_ROOT))
    return {"cache": str(root / ".cache"), "tmp": str(root / ".tmp")}
