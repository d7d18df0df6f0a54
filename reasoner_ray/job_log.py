"""The job's log file: the logger that writes only to it (cli.log_to_file sets its handler) and the folder it is in,
for the parts that put more logs beside it (ray_utils links the Ray session's logs there)."""

from __future__ import annotations

import logging
import os

failure_log = logging.getLogger("reasoner_ray.failure")  # the log file only: a failure's traceback
failure_log.propagate = False


def log_folder() -> str | None:
    """The folder of this job's log file, if it has one."""
    path = getattr(failure_log.handlers[0], "baseFilename", None) if failure_log.handlers else None
    return os.path.dirname(path) if path else None
