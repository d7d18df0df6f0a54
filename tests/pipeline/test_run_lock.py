"""One job per run directory: a second holder is refused with the first one named; the kernel frees the lock of
a SIGKILLed holder, so the next job is never blocked by a stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from reasoner_ray.core.errors import RunDirBusy
from reasoner_ray.pipeline.lock import hold_run_dir

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from reasoner_ray.pipeline.lock import hold_run_dir
with hold_run_dir({run!r}):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_holder_is_refused_and_named(tmp_path):
    run = str(tmp_path / "run")
    with hold_run_dir(run):
        with pytest.raises(RunDirBusy, match=rf"run directory {run} is in use by another job \(pid {os.getpid()} on "):
            with hold_run_dir(run):
                pass
    with hold_run_dir(run):  # released on exit
        pass


def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    run = str(tmp_path / "run")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=root, run=run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=rf"pid {holder.pid} on .*, started .*: python\S* -c"):
            with hold_run_dir(run):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    with hold_run_dir(run):
        assert time.monotonic() - started < 1
