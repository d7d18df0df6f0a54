"""Command-line plumbing shared by the entry scripts in jobs/: `--config FILE` plus `key=value` overrides, the
driver log in the run directory, and `run_guarded`: one line per failure on the console, the traceback in the
log file, the exit code of the failure (README.md (Resuming))."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable

from reasoner_ray.core.config import Config, ConfigError, load_config
from reasoner_ray.core.errors import JobError, one_line, root_cause

INTERRUPTED = 130  # the shell's code for a job stopped by Ctrl-C
_failure_log = logging.getLogger("reasoner_ray.failure")  # the log file only (see log_to_run_dir)
_failure_log.propagate = False


def parse_job_args(argv: list[str] | None, description: str,
                   add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> tuple[Config, argparse.Namespace]:
    """The config (`--config FILE` + overrides) and the script's own arguments, added by `add_arguments`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rounds=1 dpo.beta=0.2")
    args = parser.parse_args(argv)
    try:
        return load_config(args.config, args.overrides), args
    except (ConfigError, FileNotFoundError) as err:
        parser.exit(2, f"{err}\n")


def parse_config(argv: list[str] | None, description: str) -> Config:
    return parse_job_args(argv, description)[0]


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def log_to_run_dir(run_dir: str) -> str:
    """Also write the driver's log, and the traceback of a failure, to <run dir>/logs/driver.log (for a URI run
    directory, its local mirror; Ray's own logs stay in its session folder). Returns the file's path."""
    from reasoner_ray.storage import RunDir

    path = RunDir(run_dir).root / "logs" / "driver.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    _failure_log.handlers = [handler]
    return str(path)


def run_guarded(body: Callable[[], int], log_path: str | None = None) -> int:
    """Run a job's body. A failure prints one line, `error: <what failed, why, what to do>`, to stderr, writes its
    traceback to the log file only, and returns its exit code (1 a stage failed, 2 a setting is wrong, 3 the run
    directory is in use, 130 interrupted)."""
    try:
        return body()
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
    except Exception as err:  # noqa: BLE001 - every failure becomes one line and an exit code
        if _failure_log.handlers:
            _failure_log.error("job failed", exc_info=err)
        else:  # no run directory to keep it in
            traceback.print_exception(err, file=sys.stderr)
        for_people = isinstance(root_cause(err), JobError)  # a message that already says what to do
        details = f" (traceback in {log_path})" if log_path and not for_people else ""
        print(f"error: {one_line(err)}{details}", file=sys.stderr, flush=True)
        return err.exit_code if isinstance(err, JobError) else 1
