"""A real `ray start --head` cluster on 127.0.0.1 for tests that submit jobs, with token authentication ON,
optionally with worker nodes (`ray start --address ...`, each with its own CPUs and temp folder) that a test can
kill like a lost machine (`kill_node`: SIGKILL its raylet and every process under it) and replace (`add_node`).

Ray 2.60 enables token auth by default. The cluster here is started with RAY_AUTH_MODE=token and a fresh
random RAY_AUTH_TOKEN (never the user's ~/.ray/auth_token), and `ray job submit` gets the same two variables:
the same thing a user does against a real cluster (see docs/install.md).
"""

from __future__ import annotations

import json
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


AGENT_PORT_FLAGS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                    "runtime-env-agent-port")


def _agent_ports() -> list[str]:
    # Agents default to fixed ports that another Ray on the machine (a test's in-process one) may hold.
    return [f"--{flag}={free_port()}" for flag in AGENT_PORT_FLAGS]


# "/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store" under a node's temp folder: AF_UNIX socket paths
# are limited to 107 bytes, which a deeply nested clone's .tmp can overrun.
SOCKET_PATH_TAIL = 64


def _temp_dir(prefix: str) -> Path:
    """A Ray temp folder in the project's .tmp, or in /tmp when the project's path would make Ray's socket paths
    too long (the caller removes it either way). Not tempfile.gettempdir(): the test command points TMPDIR at
    the project's .tmp, the very path that is too long."""
    base = ROOT / ".tmp"
    if len(str(base)) + len(prefix) + 10 + SOCKET_PATH_TAIL > 107:
        base = Path("/tmp")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@contextmanager
def local_cluster(num_cpus: int = 2, worker_cpus: tuple[int, ...] = ()):
    """A head node with `num_cpus` CPUs plus one worker node per entry of `worker_cpus`."""
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        # A lost node is declared dead after about 3 s (1 s health checks, 3 misses) instead of about 30 s.
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    env.pop("RAY_ADDRESS", None)

    def start_head():
        nonlocal temp, gcs_port, dash_port
        temp = _temp_dir("rc-")
        gcs_port, dash_port = free_port(), free_port()
        return [str(BIN / "ray"), "start", "--head", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={num_cpus}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
                f"--temp-dir={temp}", "--disable-usage-stats", "--include-dashboard=true", *_agent_ports()]

    def clean_head():
        _stop_processes([str(temp), f"--gcs-address=127.0.0.1:{gcs_port}", f"--gcs_server_port={gcs_port}"])
        shutil.rmtree(temp, ignore_errors=True)

    temp, gcs_port, dash_port = Path(), 0, 0
    _ray_start(start_head, clean_head, env, "the head node")
    cluster = {"address": f"http://127.0.0.1:{dash_port}", "env": env, "gcs": f"127.0.0.1:{gcs_port}",
               "temp": temp, "nodes": []}
    try:
        for cpus in worker_cpus:
            add_node(cluster, cpus)
        yield cluster
    finally:
        for node in cluster["nodes"]:
            if not node.get("killed"):
                kill_node(node)
            shutil.rmtree(node["temp"], ignore_errors=True)
        clean_head()


def _stop_processes(patterns: list[str]) -> None:
    """Stop the processes whose command line holds one of `patterns` (one cluster's temp dir or GCS port), never
    every Ray on the machine: politely first, then SIGKILL what is left (gcs_server can outlive a SIGTERM)."""
    for signal_flag in ("-TERM", "-KILL"):
        for pattern in patterns:
            subprocess.run(["pkill", signal_flag, "-f", "--", pattern], check=False)
        time.sleep(2)


def _ray_start(command, clean, env: dict, what: str, attempts: int = 3) -> None:
    """Run the `ray start` that `command()` builds. A port picked by free_port() can be taken by another process
    before Ray binds it, and `ray start` then exits 1: such a start is cleaned up (`clean()`) and built again on
    fresh ports; after `attempts` failures the last one's output is raised."""
    for attempt in range(1, attempts + 1):
        run = subprocess.run(command(), check=False, env=env, capture_output=True, text=True, timeout=120)
        if run.returncode == 0:
            return
        clean()
        if attempt == attempts:
            raise RuntimeError(f"`ray start` of {what} failed {attempts} times; the last said:\n"
                               f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")


def add_node(cluster: dict, num_cpus: int = 1) -> dict:
    """Join one more node to the cluster (as an autoscaler would); returns {"port", "temp", "id"}."""
    def start_node():
        nonlocal temp, port
        temp, port = _temp_dir("rn-"), free_port()
        return [str(BIN / "ray"), "start", f"--address={cluster['gcs']}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={num_cpus}", f"--node-manager-port={port}", f"--temp-dir={temp}",
                "--disable-usage-stats", *_agent_ports()]

    def clean_node():
        kill_node({"port": port, "temp": temp})
        shutil.rmtree(temp, ignore_errors=True)

    temp, port = Path(), 0
    _ray_start(start_node, clean_node, cluster["env"], "a worker node")
    node = {"port": port, "temp": temp, "id": None}
    cluster["nodes"].append(node)
    deadline = time.time() + 60
    while node["id"] is None and time.time() < deadline:
        node["id"] = next((n["id"] for n in cluster_nodes(cluster) if n["port"] == port and n["alive"]), None)
    assert node["id"], f"node on port {port} never registered"
    return node


def _node_processes(node: dict) -> set[psutil.Process]:
    """The node's raylet and every process under it (workers, their vLLM engines, agents)."""
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if f"--node_manager_port={node['port']}" in cmdline or str(node["temp"]) in cmdline:
            found.add(proc)
            try:
                found.update(proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return found


def kill_node(node: dict) -> int:
    """SIGKILL the node's raylet and every process under it, as when a machine disappears. Returns how many
    processes were killed."""
    victims = _node_processes(node)
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(victims), timeout=10)
    node["killed"] = True
    return len(victims)


_STATE_SCRIPT = """
import json, ray
from ray.util.state import list_actors
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
nodes = [{"id": n["NodeID"], "alive": n["Alive"], "port": n["NodeManagerPort"], "head": "node:__internal_head__" in n["Resources"]} for n in ray.nodes()]
actors = [{"name": a.repr_name or a.class_name, "node_id": a.node_id, "state": a.state}
          for a in list_actors(detail=True, limit=10000)]
print("STATE" + json.dumps({"nodes": nodes, "actors": actors}))
"""


def cluster_state(cluster: dict) -> dict:
    """Nodes (id, alive, port, head) and every actor the cluster has known (name, node id, state), read from
    Ray's state API by a short driver."""
    env = {**cluster["env"], "RAY_ADDRESS": cluster["gcs"]}
    out = subprocess.run([sys.executable, "-c", _STATE_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("STATE")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(line[len("STATE"):])


def cluster_nodes(cluster: dict) -> list[dict]:
    return cluster_state(cluster)["nodes"]


def _runs_actor(node: dict, actor_name: str) -> bool:
    """Whether a worker process of the node has an actor of that name in its title: Ray titles an actor's
    process `ray::<name>.__init__` while its constructor runs and `ray::<name>` or `ray::<name>.<method>` after."""
    for proc in _node_processes(node):
        try:
            if any(part.startswith("ray::") and actor_name in part for part in proc.cmdline()):
                return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return False


def wait_for_worker_node_running(cluster: dict, actor_name: str, timeout: float = 300) -> dict:
    """The first live worker node (not the head) with a process of such an actor, from its constructor on. Read
    from the processes themselves: the state API takes seconds per query and names an actor only once it is
    constructed, which can be too late for a stage that lasts seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        node = next((n for n in cluster["nodes"] if not n.get("killed") and _runs_actor(n, actor_name)), None)
        if node:
            return node
        time.sleep(0.1)
    raise TimeoutError(f"no {actor_name} actor came up on a worker node in {timeout} s")


def submit_command(cluster: dict, entrypoint: list[str], options: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """The `ray job submit` command line and environment (the cluster's token) for `entrypoint`."""
    cmd = [str(BIN / "ray"), "job", "submit", f"--address={cluster['address']}", f"--working-dir={ROOT}", *options, "--"]
    return cmd + entrypoint, dict(cluster["env"])


def submit(cluster: dict, entrypoint: list[str], timeout: float = 600, extra_env: dict | None = None,
           ) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent is still starting (`ray start` returns before it
    is ready, and the submission then fails with "No available agent to submit job")."""
    cmd, env = submit_command(cluster, entrypoint)
    env.update(extra_env or {})
    deadline = time.time() + 120
    while True:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if "No available agent to submit job" not in out.stdout + out.stderr or time.time() > deadline:
            return out
        time.sleep(2)
