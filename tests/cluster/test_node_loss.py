"""Losing a node of a real multi-node cluster (a head and two workers of one CPU each, separate `ray start`
raylets on this machine) while distillation runs and while the endpoint serves: nothing answered is asked
again, no row is lost, and the endpoint keeps answering. Rollouts and DPO losing a node are in
tests/pipeline/test_iterative_job.py (they need the main job's SFT model).

Each test ends by adding a replacement node, so the next one starts from three nodes again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ray_cluster import (ROOT, BIN, add_node, cluster_state, free_port, kill_node, local_cluster,  # noqa: E402
                         submit_command, wait_for_worker_node_running)

from reasoner_ray.distill.cache import ResponseCache  # noqa: E402
from reasoner_ray.teacher.launch import LocalTeacher  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROWS = 400
API_KEY = "sk-node-loss-test-4e1b7c"


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(num_cpus=1, worker_cpus=(1, 1)) as cluster:
        yield cluster


def _keys(log: Path, start: int = 0) -> list[str]:
    return [json.loads(line)["key"] for line in log.read_text().splitlines()[start:]]


def test_distillation_finishes_when_a_node_dies_and_resends_nothing_answered(cluster, tmp_path):
    requests, cache, out = tmp_path / "requests.jsonl", tmp_path / "cache", tmp_path / "run" / "distill"
    job_log = tmp_path / "job.log"
    with LocalTeacher("easy_vqa:train", latency_ms=200, request_log=requests) as teacher:
        cmd, env = submit_command(cluster, [
            "python", "jobs/distill.py", "--out", str(out), f"teacher.base_url={teacher.base_url}",
            "teacher.start_local=false", "teacher.concurrency=4", f"data.train.limit={ROWS}",
            f"distill.cache_dir={cache}", f"run.dir={out.parent}", "distill.num_actors=2", "distill.batch_size=8"])
        with open(job_log, "w") as fh:
            job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            victim = wait_for_worker_node_running(cluster, "TeacherCalls")
            deadline = time.monotonic() + 300
            while len(ResponseCache(cache).keys()) < ROWS // 4:
                assert job.poll() is None, job_log.read_text()[-3000:]
                assert time.monotonic() < deadline, "distillation too slow to reach a quarter of the rows"
                time.sleep(0.1)
            kill_node(victim)
            answered = ResponseCache(cache).keys()  # cached = answered; rows in flight on the lost node are not
            sent_before = len(requests.read_text().splitlines())
            assert ROWS // 4 <= len(answered) < ROWS, "the kill came after the stage had finished"
            assert job.wait(timeout=600) == 0, job_log.read_text()[-3000:]
        finally:
            if job.poll() is None:
                job.kill()
    after = _keys(requests, sent_before)
    resent = set(after) & answered
    every = _keys(requests)
    print(f"node lost during distillation: {len(answered)} of {ROWS} rows answered before; {len(every)} requests "
          f"in all for {len(set(every))} rows ({len(every) - len(set(every))} sent twice: in flight on the lost node; "
          f"{len(resent)} for rows answered before)")
    assert not resent, f"{len(resent)} requests answered before the node died were sent again"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_rows"] == ROWS and summary["verified"] + summary["rejected"] == ROWS
    assert summary["verified"] == ROWS  # the stand-in teacher answers right unless told otherwise
    add_node(cluster, 1)


def _chat(client: httpx.Client, url: str) -> bool:
    body = {"model": "reasoner", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Generate a reason first and then output a short answer."}]}
    try:
        response = client.post(f"{url}/chat/completions", json=body, timeout=60,
                               headers={"Authorization": f"Bearer {API_KEY}"})
        return response.status_code == 200
    except httpx.HTTPError:
        return False


def _alive_replicas(cluster, not_on: str | None = None) -> int:
    return sum(1 for a in cluster_state(cluster)["actors"]
               if "ServeReplica" in a["name"] and a["state"] == "ALIVE" and a["node_id"] != not_on)


@pytest.mark.vllm
def test_endpoint_keeps_answering_when_a_replica_node_dies(cluster, tiny_qwen2_vl, tmp_path):
    """Two replicas (one CPU each, so on two nodes), four clients in a loop. The node of one replica dies: the
    endpoint keeps answering, the only failures are requests that were in flight there, and Serve starts a
    replacement replica on the CPU left (the head's)."""
    keys = tmp_path / "api_keys"
    keys.write_text(API_KEY + "\n")
    port, job_id = free_port(), f"serve-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}/v1"
    cmd, env = submit_command(cluster, [
        "python", "jobs/serve_model.py", f"serve.model_path={tiny_qwen2_vl}", "serve.model_name=reasoner",
        f"serve.port={port}", "serve.proxy_location=HeadOnly", "serve.min_replicas=2", "serve.max_replicas=2",
        "serve.replica_cpus=1", "serve.max_model_len=512", f"serve.api_keys_file={keys}",
        "serve.api_keys_env=NODE_LOSS_TEST_UNSET"], options=(f"--submission-id={job_id}",))
    job_log = tmp_path / "job.log"
    with open(job_log, "w") as fh:
        job = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    results: list[tuple[float, bool]] = []
    stop = threading.Event()

    def client_loop():
        with httpx.Client() as client:
            while not stop.is_set():
                ok = _chat(client, url)
                results.append((time.monotonic(), ok))  # when it ended: a request in flight at the kill is "after"

    try:
        deadline = time.monotonic() + 300
        with httpx.Client() as client:
            while not _chat(client, url):
                assert job.poll() is None, job_log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the endpoint never answered"
                time.sleep(1)
        while _alive_replicas(cluster) < 2:  # the first replica can answer before the second is up
            assert time.monotonic() < deadline, "the second replica never came up"
            time.sleep(1)
        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(client_loop)
            time.sleep(5)
            victim = wait_for_worker_node_running(cluster, "ServeReplica", timeout=60)
            killed_at = time.monotonic()
            kill_node(victim)
            recovered_at = None
            while time.monotonic() < killed_at + 240:
                if _alive_replicas(cluster, not_on=victim["id"]) == 2:
                    recovered_at = time.monotonic()
                    break
                time.sleep(2)
            time.sleep(5)  # and it keeps answering with the replacement replica
            stop.set()
        before = [ok for t, ok in results if t < killed_at]
        after = [ok for t, ok in results if t >= killed_at]
        print(f"node loss under load: {len(before)} requests before ({before.count(False)} failed), {len(after)} "
              f"after ({after.count(False)} failed); two replicas again after "
              f"{(recovered_at or float('nan')) - killed_at:.0f} s")
        assert recovered_at, "Serve did not bring the replica count back to 2"
        assert all(before) and len(before) >= 4
        assert after.count(False) <= 4, "more failures than requests in flight on the lost replica"
        assert after.count(True) >= 8 and all(ok for t, ok in results if t > recovered_at)
    finally:
        stop.set()
        subprocess.run([str(BIN / "ray"), "job", "stop", f"--address={cluster['address']}", job_id], env=env,
                       capture_output=True, timeout=60)
        job.kill()
    add_node(cluster, 1)
