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


def test_a_refused_job_writes_nothing_into_the_running_jobs_folder(tmp_path):
    """The lock comes before the log: a second main job on a busy run directory exits 3 and leaves the running
    job's driver.log as it was; jobs/distill.py writing into the run directory's distill folder (which
    `--redo distill` deletes) is refused too."""
    run = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=root, run=str(run))], stdout=subprocess.PIPE,
                              text=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        assert holder.stdout.readline().strip() == "held"
        (run / "logs").mkdir(parents=True, exist_ok=True)
        (run / "logs" / "driver.log").write_text("the running job's log\n")
        for job in (["jobs/iterative_dpo.py", "--config", "configs/easy_vqa.yaml"], ["jobs/distill.py"]):
            refused = subprocess.run([sys.executable, *job, f"run.dir={run}"], cwd=root, env=env,
                                     capture_output=True, text=True, timeout=120)
            assert refused.returncode == 3, refused.stderr[-2000:]
            assert refused.stderr.strip().splitlines()[-1].startswith(f"error: run directory {run} is in use")
        assert (run / "logs" / "driver.log").read_text() == "the running job's log\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_output_locks_include_the_run_directory_for_its_stage_folders(tmp_path):
    from reasoner_ray.cli import output_locks
    from reasoner_ray.core.config import build_config

    config = build_config({"run": {"dir": str(tmp_path / "run")}})
    assert output_locks(config, str(tmp_path / "run" / "distill")) == [str(tmp_path / "run"), str(tmp_path / "run" / "distill")]
    assert output_locks(config, str(tmp_path / "run" / "rounds" / "r1" / "dpo" / "mine")) == \
        [str(tmp_path / "run"), str(tmp_path / "run" / "rounds" / "r1" / "dpo" / "mine")]
    assert output_locks(config, str(tmp_path / "elsewhere")) == [str(tmp_path / "elsewhere")]
    assert not (tmp_path / "run").exists()  # asking what to lock creates nothing
