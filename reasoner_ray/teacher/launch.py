"""Start and stop the stand-in teacher server as a child process (tests, benchmarks, the quickstart).

    with LocalTeacher("easy_vqa:train", latency_ms=50, request_log="req.jsonl") as teacher:
        teacher.base_url  # http://127.0.0.1:<port>/v1

`spec_for_source(DataSource)` turns the config's train source into the server's `--data` argument.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from reasoner_ray.core.config import DataSource


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec_for_source(source: DataSource) -> str:
    if source.format in ("digits", "arithmetic"):  # one image per question: index only the questions the run asks
        last = None if source.limit is None else source.offset + source.limit
        return f"{source.format}:{source.split}" + (f":{last}" if last is not None else "")
    if source.format == "easy_vqa":  # all of a split: an image's facts come from all of its questions
        return f"easy_vqa:{source.split}"
    if not source.path:
        raise ValueError(f"data source of format {source.format} has no path for the local teacher")
    return f"{source.format}:{source.path}"


def answers(base_url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=timeout_s) as resp:
            return resp.status == 200
    except OSError:
        return False


class LocalTeacher:
    def __init__(self, data: str, port: int | None = None, log_file: str | os.PathLike[str] | None = None,
                 startup_timeout_s: float = 120.0, **knobs: Any):
        self.data, self.port = data, port or free_port()
        self.knobs = knobs  # latency_ms=..., p429=..., request_log=... -> --latency-ms ... (see server.py)
        self.log_file = log_file
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "reasoner_ray.teacher.server", "--data", self.data, "--port", str(self.port)]
        for name, value in self.knobs.items():
            if value is not None:
                cmd += [f"--{name.replace('_', '-')}", str(value)]
        return cmd

    def start(self) -> "LocalTeacher":
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while not answers(self.base_url):
            if self.proc.poll() is not None:
                where = f"; see {Path(self.log_file)}" if self.log_file else ""
                raise RuntimeError(f"local teacher exited with code {self.proc.returncode} at startup{where}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"local teacher did not answer on {self.base_url} in {self.startup_timeout_s} s")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "LocalTeacher":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
