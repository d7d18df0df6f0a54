"""The entry scripts' shared plumbing (reasoner_ray/cli.py): one `error:` line on the console per failure, the
traceback kept in a file, and the exit code of the failure, also for scripts that have no run directory."""

from __future__ import annotations

import pytest

from reasoner_ray import cli
from reasoner_ray.core.errors import PreflightError


def test_a_job_without_a_run_dir_keeps_its_traceback_in_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REASONER_CACHE_ROOT", str(tmp_path))
    monkeypatch.setattr(cli._failure_log, "handlers", [])

    def broken() -> int:
        raise ValueError("the input is bad")

    assert cli.run_guarded(broken) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ValueError: the input is bad (traceback in ")
    log = err.split("(traceback in ")[1].rstrip(")\n")
    assert log.startswith(str(tmp_path / ".tmp" / "logs")) and "Traceback" in open(log).read()

    def misconfigured() -> int:
        raise PreflightError("serve.model_path=/x: no such folder")

    assert cli.run_guarded(misconfigured) == 2  # a message written for people: no pointer to a traceback
    assert capsys.readouterr().err == "error: serve.model_path=/x: no such folder\n"


@pytest.mark.parametrize("argv, message", [
    (["--config", "{missing}"], "error: config file {missing}: does not exist"),
    (["rounds=[1"], "error: override 'rounds=[1': the value is not valid YAML"),
    (["dpo.betta=0.1"], "error: invalid config:\n  dpo.betta: unknown key"),
])
def test_bad_config_exits_2_naming_it(argv, message, tmp_path, capsys):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(SystemExit) as caught:
        cli.parse_job_args([a.format(missing=missing) for a in argv], "test")
    assert caught.value.code == 2 and capsys.readouterr().err.startswith(message.format(missing=missing))


def test_a_run_dir_that_is_a_file_exits_2_before_anything_starts(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(SystemExit) as caught:
        cli.driver_log_path(str(not_a_folder))
    assert caught.value.code == 2 and capsys.readouterr().err.startswith(f"error: run.dir={not_a_folder}: cannot write")


@pytest.mark.parametrize("argv", [
    ["--seeds", "3", "4", "run.dir=runs/s", "rounds=1"],
    ["run.dir=runs/s", "--seeds", "3", "4", "rounds=1"],
    ["rounds=1", "run.dir=runs/s", "--seeds", "3", "4"],
])
def test_overrides_written_after_a_list_valued_flag_stay_overrides(argv):
    # jobs/seeds.py's documented form: `--seeds 0 1 2 [key=value ...]`
    def seeds(parser):
        parser.add_argument("--seeds", type=cli.int_or_override, nargs="+", default=[0])

    config, args = cli.parse_job_args(argv, "test", seeds)
    assert args.seeds == [3, 4] and config.run.dir == "runs/s" and config.rounds == 1
