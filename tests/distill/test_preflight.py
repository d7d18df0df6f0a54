"""Preflight checks against real servers and real folders: each wrong setting gives a PreflightError whose one
line names the setting; a working teacher's probe answer lands in the response cache (no extra request later);
connection refused is reported as a connection error, not a timeout."""

from __future__ import annotations

import json
import socket

import pytest

from reasoner_ray.core.config import DataSource, build_config
from reasoner_ray.core.errors import PreflightError
from reasoner_ray.core.rundir import Manifest
from reasoner_ray.distill.cache import ResponseCache
from reasoner_ray.distill.client import CallSettings, TeacherCaller
from reasoner_ray.distill.preflight import check_teacher
from reasoner_ray.pipeline.distillation import call_settings
from reasoner_ray.pipeline.preflight import check_data, check_model, check_sources, check_storage, preflight
from reasoner_ray.teacher.launch import LocalTeacher


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    log = tmp_path_factory.mktemp("teacher") / "requests.jsonl"
    with LocalTeacher("easy_vqa:train", request_log=log) as server:
        yield server, log


def _config(base_url, tmp_path, *more):
    return build_config({}, [f"teacher.base_url={base_url}", "teacher.start_local=false", "data.train.limit=4",
                             f"run.dir={tmp_path}", "teacher.backoff_base_s=0.01", "teacher.backoff_max_s=0.02", *more])


def _check(config, tmp_path):
    check_teacher(config, call_settings(config), str(tmp_path / "cache"))


def test_a_working_teacher_answers_once_and_the_answer_is_cached(teacher, tmp_path):
    server, log = teacher
    config = _config(server.base_url, tmp_path)
    sent = len(log.read_text().splitlines())
    _check(config, tmp_path)
    assert len(log.read_text().splitlines()) == sent + 1
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["text"].strip()
    _check(config, tmp_path)  # the first row is cached now: the probe takes the next one, never resends
    keys = [json.loads(line)["key"] for line in log.read_text().splitlines()[sent:]]
    assert len(keys) == 2 and len(set(keys)) == 2


def test_connection_refused_is_a_connection_error_naming_base_url(tmp_path):
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        with pytest.raises(PreflightError, match=r"teacher.base_url=.* cannot be reached \(ConnectionRefusedError"):
            _check(_config(url, tmp_path), tmp_path)
        import asyncio

        settings = CallSettings(base_url=url, model="m", api_key="k", sampling={}, timeout_s=5, max_retries=0,
                                backoff_base_s=0.01, backoff_max_s=0.01, concurrency=1)

        async def once():
            caller = TeacherCaller(settings)
            try:
                return await caller.call([{"role": "user", "content": "hi"}])
            finally:
                await caller.close()

        result = asyncio.run(once())
    assert result.error == "teacher_connection_error" and result.detail.startswith("ConnectionRefusedError")


def test_wrong_model_name_is_named(teacher, tmp_path):
    with pytest.raises(PreflightError, match=r"does not serve teacher.model='gpt-9' .*set teacher.model"):
        _check(_config(teacher[0].base_url, tmp_path, "teacher.model=gpt-9"), tmp_path)
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_missing_api_key_names_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("BAD_DAY_SERVER_KEY", "sk-right")
    with LocalTeacher("easy_vqa:train", api_key_env="BAD_DAY_SERVER_KEY") as server:
        config = _config(server.base_url, tmp_path, "teacher.api_key_env=BAD_DAY_CLIENT_KEY")
        with pytest.raises(PreflightError, match=r"refused the API key \(HTTP 401\).* BAD_DAY_CLIENT_KEY \(it is not set\)"):
            _check(config, tmp_path)
        monkeypatch.setenv("BAD_DAY_CLIENT_KEY", "sk-right")
        _check(config, tmp_path)  # the right key passes
    assert "sk-right" not in str(config.model_dump())


def test_bad_data_and_model_settings_are_named(tmp_path):
    missing = tmp_path / "nope.jsonl"
    config = build_config({}, ["data.train.format=jsonl", f"data.train.path={missing}", "distill.enabled=false"])
    with pytest.raises(PreflightError, match=rf"data.train \(format jsonl, path {missing}\): data path .* does not exist"):
        check_data(config, Manifest())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({"id": i, "question": "q?", "answer": "a", "image": "missing.png"}) + "\n"
                           for i in range(3)))
    config = build_config({}, ["data.train.format=jsonl", f"data.train.path={bad}", "distill.enabled=false"])
    with pytest.raises(PreflightError, match=r"none of its records is a valid row \(missing_image 3; first: 0: missing_image \(no file at missing.png"):
        check_data(config, Manifest())
    empty = tmp_path / "model"
    empty.mkdir()
    with pytest.raises(PreflightError, match=rf"model.path={empty} does not load .*point it at a Hugging Face"):
        check_model(build_config({}, [f"model.path={empty}"]), str(empty))
    both = {"data.train": DataSource(format="jsonl", path=str(tmp_path / "a.jsonl")),
            "data.eval": DataSource(format="jsonl", path=str(tmp_path / "b.jsonl"))}
    with pytest.raises(PreflightError, match=r"^data.train \(.*a.jsonl\): .* does not exist; data.eval \(.*b.jsonl\): "):
        check_sources(both)  # every bad source named at once
    missing = tmp_path / "no-such-model"
    with pytest.raises(PreflightError, match=rf"^--model {missing}: no such folder$"):
        check_model(build_config({}), str(missing), f"--model {missing}")


def test_the_base_model_is_checked_only_while_a_stage_starts_from_it(tmp_path):
    empty = tmp_path / "model"
    empty.mkdir()
    base = [f"model.path={empty}", "data.train.limit=4", "data.eval.limit=4"]
    with pytest.raises(PreflightError, match="does not load"):
        preflight(build_config({}, base), Manifest(), str(empty))  # SFT to run
    with pytest.raises(PreflightError, match="does not load"):
        preflight(build_config({}, [*base, "sft.enabled=false", "rounds=1"]), Manifest(), str(empty))  # round 1
    preflight(build_config({}, [*base, "sft.enabled=false", "rounds=0"]), Manifest(), str(empty))  # distillation only
    done = Manifest()
    done.record("sft", 4, 1, 1.0)
    preflight(build_config({}, base), done, str(empty))  # resumed after SFT: the rounds start from SFT's model


def test_a_uri_run_dir_is_refused_on_more_than_one_node():
    config = build_config({}, ["run.dir=s3://bucket/runs/q"])
    check_storage(config, alive_nodes=1)  # one node: the local mirror is where every stage writes
    check_storage(build_config({}, ["run.dir=/mnt/shared/runs/q"]), alive_nodes=3)  # a shared path
    with pytest.raises(PreflightError, match=r"run.dir=s3://bucket/runs/q is a URI, .* this cluster has 3 nodes: set run.dir to a path every node mounts"):
        check_storage(config, alive_nodes=3)


def test_a_probe_row_is_never_sent_when_its_answer_is_cached(teacher, tmp_path):
    server, log = teacher
    config = _config(server.base_url, tmp_path, "data.train.limit=2")
    _check(config, tmp_path)
    _check(config, tmp_path)
    sent = len(log.read_text().splitlines())
    _check(config, tmp_path)  # both rows cached: nothing to probe, nothing sent
    assert len(log.read_text().splitlines()) == sent
    assert len(list(ResponseCache(tmp_path / "cache").folder.rglob("*.json"))) == 2


def test_a_teacher_that_refuses_the_image_request_is_named(tmp_path):
    # This server knows only easy-VQA test images: a train image is refused with a 400, as a text-only model would.
    with LocalTeacher("easy_vqa:test") as server:
        with pytest.raises(PreflightError, match=r"refused a request with an image \(HTTP 400: .*teacher.model must accept image input"):
            _check(_config(server.base_url, tmp_path), tmp_path)


def test_check_outcome_fails_on_transport_failures_above_the_fraction_and_on_no_verified_row():
    from reasoner_ray.core.errors import JobError
    from reasoner_ray.pipeline.distillation import DistillResult, check_outcome

    ok = DistillResult(200, 197, {"teacher_timeout": 2, "wrong_answer": 1}, "out")
    check_outcome(ok, 0.01)  # 2 of 200 is exactly the 1% allowed
    outage = DistillResult(200, 150, {"teacher_timeout": 2, "teacher_connection_error": 40, "wrong_answer": 8}, "out")
    with pytest.raises(JobError, match=r"^42 of 200 rows got no answer from the teacher \(teacher_connection_error 40, "
                                       r"teacher_timeout 2\), more than distill.max_failed_fraction=0.01 allows"):
        check_outcome(outage, 0.01)
    check_outcome(outage, 0.25)
    with pytest.raises(JobError, match=r"no verified rows.*all 3 rows were rejected \(missing_image 3; see out/rejected.jsonl\)$"):
        check_outcome(DistillResult(3, 0, {"missing_image": 3}, "out"), 0.01)
    with pytest.raises(JobError, match="data.train gave no rows"):
        check_outcome(DistillResult(0, 0, {}, "out"), 0.01)
