"""Distillation's pure parts: request keys, the durable cache (incl. SIGKILL mid-write), fault plans, the token
bucket, Retry-After parsing, verification into SFT records, and the stand-in teacher's rationales."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from reasoner_ray.core.config import DataSource
from reasoner_ray.core.prompts import teacher_messages
from reasoner_ray.data.readers import iter_rows
from reasoner_ray.distill.cache import ResponseCache
from reasoner_ray.distill.client import CallResult, retry_after_s
from reasoner_ray.distill.limits import TokenBucket
from reasoner_ray.distill.request_key import body_key, request_key
from reasoner_ray.distill.verify import judge
from reasoner_ray.core.reward import score
from reasoner_ray.teacher.faults import FaultPlan
from reasoner_ray.teacher.index import AnnotationIndex
from reasoner_ray.teacher.server import write_completion

MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "is there a circle?"}]}]


@pytest.fixture(scope="module")
def rows():
    return list(iter_rows(DataSource(split="test", limit=40)))


def test_request_key_depends_on_model_messages_and_sampling_only():
    key = request_key("m", MESSAGES, {"temperature": 0.7, "max_tokens": 64})
    assert key == request_key("m", MESSAGES, {"max_tokens": 64, "temperature": 0.7, "timeout": 3})
    assert key != request_key("m", MESSAGES, {"temperature": 0.8, "max_tokens": 64})
    assert key != request_key("other", MESSAGES, {"temperature": 0.7, "max_tokens": 64})
    body = {"model": "m", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 64, "stream": False}
    assert body_key(body) == key  # what the server logs is what the pipeline caches under


def test_cache_round_trip_and_sweep(tmp_path):
    cache = ResponseCache(tmp_path)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, {"text": "hello"})
    assert cache.get("ab" * 32) == {"text": "hello"} and cache.keys() == {"ab" * 32}
    (tmp_path / "ab" / ".partial-xyz").write_text('{"tex')  # what a killed writer leaves behind
    assert cache.keys() == {"ab" * 32} and cache.sweep_partial() == 1


def test_cache_under_a_uri_run_dir_is_on_that_storage_not_in_a_local_folder(tmp_path, monkeypatch):
    """run.dir s3://... (the paper config): the cache must live there, shared by every node and by a resumed run,
    never in a folder literally named "s3:" under a worker's working directory."""
    from reasoner_ray.core.config import Config
    from reasoner_ray.pipeline.distillation import cache_dir

    bucket = tmp_path / "bucket"
    config = Config.model_validate({"run": {"dir": f"file://{bucket}/run"}})
    for node in ("node1", "node2"):
        (tmp_path / node).mkdir()
    monkeypatch.chdir(tmp_path / "node1")
    ResponseCache(cache_dir(config)).put("ab" * 32, {"text": "paid for once"})
    assert (bucket / "run" / "cache" / "teacher" / "ab" / f"{'ab' * 32}.json").is_file()
    assert not list((tmp_path / "node1").rglob("*"))
    monkeypatch.chdir(tmp_path / "node2")  # another node, or the resumed run
    assert ResponseCache(cache_dir(config)).get("ab" * 32) == {"text": "paid for once"}


def test_cache_on_an_object_store():
    """An object store (s3, gs) has no rename: a put is one whole object, visible whole or not at all."""
    from fsspec.implementations.memory import MemoryFileSystem
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    store = PyFileSystem(FSSpecHandler(MemoryFileSystem()))
    cache = ResponseCache("bucket/run/cache/teacher", filesystem=store)
    assert cache.get("cd" * 32) is None
    cache.put("cd" * 32, {"text": "x"})
    assert cache.get("cd" * 32) == {"text": "x"} and cache.keys() == {"cd" * 32}
    assert ResponseCache("bucket/run/cache/teacher", filesystem=store).get("cd" * 32) == {"text": "x"}
    assert cache.sweep_partial() == 0


def test_cache_survives_sigkill_mid_write(tmp_path):
    writer = (
        "import sys; from reasoner_ray.distill.cache import ResponseCache\n"
        "c = ResponseCache(sys.argv[1])\n"
        "for i in range(10**6): c.put(f'{i:064x}', {'i': i, 'text': 'x' * 5000})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)])
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("*/*.json"))) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = ResponseCache(tmp_path)
    keys = cache.keys()
    assert len(keys) >= 200
    for key in keys:  # every visible entry is whole: never a torn file
        assert cache.get(key)["i"] == int(key, 16)
    cache.sweep_partial()
    assert not list(tmp_path.glob("*/.partial-*"))


def test_fault_plan_is_deterministic_and_hits_its_rates():
    plan = FaultPlan(p429=0.2, p5xx=0.05, ptimeout=0.05, pmalformed=0.05, pwrong=0.1, seed=3)
    keys = [f"{i:064x}" for i in range(20000)]
    transport = [plan.transport(k, 0) for k in keys]
    content = [plan.content(k) for k in keys]
    assert transport == [plan.transport(k, 0) for k in keys] and content == [plan.content(k) for k in keys]
    for fault, p in (("429", 0.2), ("5xx", 0.05), ("timeout", 0.05)):
        assert abs(transport.count(fault) / len(keys) - p) < 0.015
    for fault, p in (("malformed", 0.05), ("wrong", 0.1)):
        assert abs(content.count(fault) / len(keys) - p) < 0.015
    assert [plan.transport(keys[0], a) for a in range(50)].count(None) < 50  # attempts draw afresh
    with pytest.raises(ValueError, match="p429"):
        FaultPlan(p429=1.5)


def test_token_bucket_holds_the_rate():
    async def run() -> float:
        bucket = TokenBucket(per_minute=1200)  # 20/s, a burst of 20
        start = time.monotonic()
        for _ in range(50):
            await bucket.take(1)
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    assert 1.2 < elapsed < 3.0  # 30 beyond the burst at 20/s = 1.5 s


def test_retry_after_parsing():
    def exc(headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert retry_after_s(exc({"retry-after-ms": "250", "retry-after": "1"})) == 0.25
    assert retry_after_s(exc({"retry-after": "2"})) == 2.0
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after_s(exc({"retry-after": http_date})) <= 31
    assert retry_after_s(exc({})) is None and retry_after_s(ValueError()) is None


def test_judge_sorts_every_outcome(rows):
    row = rows[0]
    gold = row.answers[0]
    ok = judge(row, CallResult(text=f"The shape is plain.\n### Answer: {gold}", attempts=2), "k", cached=False)
    assert ok["status"] == "verified" and ok["attempts"] == 2
    cot, direct = json.loads(ok["cot"]), json.loads(ok["direct"])
    assert cot["conversations"][1]["value"] == f"The shape is plain.\n### Answer: {gold}"
    assert direct["conversations"][1]["value"] == gold
    assert "Generate a reason first" in cot["conversations"][0]["value"]
    wrong = "no" if gold == "yes" else "yes" if gold == "no" else "purple"
    cases = {
        "wrong_answer": CallResult(text=f"Because.\n### Answer: {wrong}"),
        "unparsed": CallResult(text="The image shows"),
        "teacher_empty_response": CallResult(text=""),
        "teacher_rate_limited": CallResult(error="teacher_rate_limited", detail="RateLimitError: x", attempts=7),
        "no_rationale": CallResult(text=f"### Answer: {gold}"),
    }
    for reason, call in cases.items():
        out = judge(row, call, "k", cached=False)
        assert (out["status"], out["reason"]) == ("rejected", reason)


def test_judge_writes_the_consensus_gold_it_verified_against(rows):
    # ten human answers, the first an outlier: the SFT target must end with the answer the reward calls correct
    row = rows[0].model_copy(update={"question": "How many shapes?", "answer": ["2"] + ["3"] * 9, "answer_type": "open"})
    out = judge(row, CallResult(text="I count three shapes.\n### Answer: three"), "k", cached=False)
    assert out["status"] == "verified"
    target = json.loads(out["cot"])["conversations"][1]["value"]
    assert target.endswith("### Answer: 3") and json.loads(out["direct"])["conversations"][1]["value"] == "3"
    assert score(target, row.answer, "open").correct
    # an answer some humans gave (3 of 10 count as correct for VQA accuracy) but not the consensus is rejected:
    # the rationale would conclude one answer and the target line another
    row = row.model_copy(update={"answer": ["2"] * 3 + ["3"] * 7})
    out = judge(row, CallResult(text="I count two shapes.\n### Answer: 2"), "k", cached=False)
    assert (out["status"], out["reason"]) == ("rejected", "wrong_answer")


def test_teacher_writes_verifiable_varied_rationales(rows):
    index = AnnotationIndex.from_source(DataSource(split="test", limit=200))
    texts = set()
    for row in rows:
        entry = index.lookup(Path(row.image.path).read_bytes())
        assert entry is not None and entry.match(row.question) is not None
        for i in range(3):
            text = write_completion(row, entry, None, random.Random(f"{row.id}:{i}"))
            assert score(text, row.answer, row.answer_type).correct, text
            texts.add(text)
        wrong = write_completion(row, entry, "wrong", random.Random(row.id))
        assert not score(wrong, row.answer, row.answer_type).correct
        assert score(write_completion(row, entry, "malformed", random.Random(row.id)), row.answer, row.answer_type).reason == "unparsed"
    assert len(texts) > len(rows) * 1.5  # several phrasings per question
    assert teacher_messages(rows[0], "data:image/png;base64,AA==", True)[0]["role"] == "system"
