"""One job per run directory: an exclusive `flock` on <run dir>/.lock, held for the job's lifetime.

The kernel releases the lock when the holding process dies, however it dies (SIGKILL included), so a killed
job never leaves a stale lock; a second job is refused with a message naming the holder (pid, host, start
time, command), which the holder writes into the file. For a URI run directory the lock is on the local mirror:
it keeps out a second job on the same machine only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator

from reasoner_ray.core.errors import RunDirBusy
from reasoner_ray.storage import RunDir

LOCK_FILE = ".lock"


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a job that is starting"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid')} on {info.get('host')}, started {started}: {info.get('command', '?')}"


@contextlib.contextmanager
def hold_run_dir(location: str) -> Iterator[None]:
    """Hold the run directory's lock for the `with` block; raise RunDirBusy when another job holds it."""
    path = RunDir(location).root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)  # CLOEXEC: child processes never hold it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"run directory {location} is in use by another job ({_holder(fd)}): wait for it to "
                             f"finish or stop it, or set run.dir to another folder") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join([os.path.basename(sys.executable), *sys.argv])[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
