"""A real `ray start --head` cluster on 127.0.0.1 for tests that submit jobs, with token authentication ON.

Ray 2.60 enables token auth by default. The cluster here is started with RAY_AUTH_MODE=token and a fresh
random RAY_AUTH_TOKEN (never the user's ~/.ray/auth_token), and `ray job submit` gets the same two variables:
the same thing a user does against a real cluster (see README, "Ray job authentication").
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_cluster(num_cpus: int = 2):
    temp = Path(tempfile.mkdtemp(prefix="rc-", dir=ROOT / ".tmp"))
    gcs_port, dash_port = free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    start = [str(BIN / "ray"), "start", "--head", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
             f"--num-cpus={num_cpus}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
             f"--temp-dir={temp}", "--disable-usage-stats", "--include-dashboard=true",
             # Agents default to fixed ports that another Ray on the machine (a test's in-process one) may hold.
             *(f"--{flag}={free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                      "metrics-export-port", "runtime-env-agent-port"))]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    cluster = {"address": f"http://127.0.0.1:{dash_port}", "env": env, "gcs": f"127.0.0.1:{gcs_port}"}
    try:
        yield cluster
    finally:
        # Stop only this cluster's processes (by its temp dir or GCS port), never every Ray on the machine:
        # politely first, then SIGKILL what is left (gcs_server can outlive a SIGTERM).
        patterns = [str(temp), f"--gcs-address=127.0.0.1:{gcs_port}", f"--gcs_server_port={gcs_port}"]
        for signal_flag in ("-TERM", "-KILL"):
            for pattern in patterns:
                subprocess.run(["pkill", signal_flag, "-f", "--", pattern], check=False)
            time.sleep(2)
        shutil.rmtree(temp, ignore_errors=True)


def submit(cluster: dict, entrypoint: list[str], timeout: float = 600, extra_env: dict | None = None,
           ) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent is still starting (`ray start` returns before it
    is ready, and the submission then fails with "No available agent to submit job")."""
    cmd = [str(BIN / "ray"), "job", "submit", f"--address={cluster['address']}", f"--working-dir={ROOT}", "--"]
    env = {**cluster["env"], **(extra_env or {})}
    deadline = time.time() + 120
    while True:
        out = subprocess.run(cmd + entrypoint, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if "No available agent to submit job" not in out.stdout + out.stderr or time.time() > deadline:
            return out
        time.sleep(2)
