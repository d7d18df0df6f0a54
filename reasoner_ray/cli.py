"""Command-line plumbing shared by the entry scripts in jobs/: `--config FILE` plus `key=value` overrides, and
`run_job`: the locks of the folders a job writes (pipeline/lock.py), then the driver log in the run directory,
then the job's body under `run_guarded`: one line per failure on the console, the traceback in the log file (the
run directory's, or <project tmp>/logs/ for a job without one), the exit code of the failure
(docs/resuming.md)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from reasoner_ray.core.config import Config, ConfigError, load_config
from reasoner_ray.core.errors import JobError, one_line, root_cause
from reasoner_ray.job_log import failure_log as _failure_log

INTERRUPTED = 130  # the shell's code for a job stopped by Ctrl-C


def summary(doc: str | None) -> str:
    """A script's --help description: the first paragraph of its docstring, as one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def parse_job_args(argv: list[str] | None, doc: str | None,
                   add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> tuple[Config, argparse.Namespace]:
    """The config (`--config FILE` + overrides) and the script's own arguments, added by `add_arguments`."""
    parser = argparse.ArgumentParser(description=summary(doc))
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (key=value), e.g. run.dir=runs/try1")
    args = parser.parse_intermixed_args(argv)  # flags before, between or after the overrides
    # a list-valued flag (`--seeds 0 1 2`) also takes the overrides written after it: they go back where they belong
    for name, value in vars(args).items():
        if name != "overrides" and isinstance(value, list):
            setattr(args, name, [v for v in value if not _is_override(v)])
            args.overrides += [v for v in value if _is_override(v)]
    try:
        return load_config(args.config, args.overrides), args
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")


def _is_override(value) -> bool:
    return isinstance(value, str) and "=" in value


def int_or_override(value: str) -> int | str:
    """The `type` of a list-valued int flag: an int, or a key=value override it took by mistake (parse_job_args)."""
    return value if "=" in value else int(value)


def parse_config(argv: list[str] | None, doc: str | None) -> Config:
    return parse_job_args(argv, doc)[0]


class _ProjectLines(logging.Filter):
    """The console's rule: the project's own records, and anyone's errors. Everything else (Ray's, Ray Data's,
    vLLM's, DeepSpeed's, Python warnings) goes to the log file only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(PROJECT_LOGGERS) or record.levelno >= logging.ERROR


PROJECT_LOGGERS = ("reasoner_ray", "serve")  # the package's and the endpoint's loggers (jobs log as reasoner_ray.jobs.*)


class _ThroughTheRoot(logging.Filter):
    """For a library logger that prints with a stream handler of its own and does not propagate (DeepSpeed's):
    its records go through the root's handlers instead (the console's rule, the log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
        return False


def setup_logging(level: int = logging.INFO) -> None:
    """The project's lines to stdout; Python warnings become log records (the log file keeps them)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(_ProjectLines())
    root = logging.getLogger()
    root.setLevel(level)
    root.handlers = [h for h in root.handlers if not isinstance(h, logging.StreamHandler)] + [handler]
    logging.captureWarnings(True)
    # created now, configured by DeepSpeed when it is imported: a logger's filters outlive that
    deepspeed = logging.getLogger("DeepSpeed")
    if not any(isinstance(f, _ThroughTheRoot) for f in deepspeed.filters):
        deepspeed.addFilter(_ThroughTheRoot())


def driver_log_path(run_dir: str) -> str:
    """<run dir>/logs/driver.log (for a URI run directory, its local mirror; Ray's own logs stay in its session
    folder), its folder made; a run.dir that cannot hold it exits 2 before anything starts."""
    from reasoner_ray.storage import RunDir

    try:
        path = RunDir(run_dir).root / "logs" / "driver.log"
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. run.dir names a file: a setting to fix, said before anything starts
        print(f"error: run.dir={run_dir}: cannot write its logs folder ({err.strerror}: {err.filename})",
              file=sys.stderr)
        raise SystemExit(2) from None
    return str(path)


def log_to_file(path: str) -> None:
    """Also write the driver's log, and the traceback of a failure, to `path`; output that bypasses logging (Ray's
    and vLLM's native code, child processes started from here) goes to native.log beside it, and the console
    keeps the project's lines. Says where on the console's first line."""
    import os

    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    _failure_log.handlers = [handler]
    folder = os.path.dirname(path)
    _native_stderr_to(os.path.join(folder, "native.log"))
    logging.getLogger("reasoner_ray").info("logs: %s (driver.log; Ray, vLLM and DeepSpeed: %s)", folder,
                                           os.path.join(folder, "ray"))


def _native_stderr_to(path: str) -> None:
    """Point file descriptor 2 at `path`, so what native code and child processes write to stderr lands there,
    while Python's sys.stderr (a job's one-line errors) keeps the terminal."""
    import os

    try:
        terminal = os.dup(2)
        log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, closefd=True)


def run_job(body: Callable[[], int], run_dir: str | None = None, locks: Sequence[str] = ()) -> int:
    """A job's body under `run_guarded`, holding the lock of each folder in `locks` (the run directory, or the
    folder a job writes) for its whole run; then, with `run_dir`, logging to <run dir>/logs/driver.log. The log
    is opened only once the locks are held: a job refused because another holds the folder writes nothing into
    the running job's log."""
    log_path = driver_log_path(run_dir) if run_dir is not None else None

    def locked() -> int:
        from reasoner_ray.pipeline.lock import hold_run_dir

        with contextlib.ExitStack() as stack:
            for folder in dict.fromkeys(locks):
                stack.enter_context(hold_run_dir(folder))
            if log_path is not None:
                log_to_file(log_path)
            return body()

    return run_guarded(locked, log_path)


def output_locks(config: Config, out: str) -> list[str]:
    """What a job writing `out` locks: `out` itself, and the run directory too when `out` lies in one of its
    stage folders (jobs/distill.py's default <run dir>/distill is the folder `--redo distill` deletes)."""
    from pathlib import Path

    from reasoner_ray.core.rundir import stage_of_folder

    locks = [out]
    if "://" in config.run.dir:  # a remote run directory: no local folder lies in it
        return locks
    root, target = Path(config.run.dir).resolve(), Path(out).resolve()
    if target.is_relative_to(root):
        parts = target.relative_to(root).parts
        if any(stage_of_folder("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            locks.insert(0, config.run.dir)
    return locks


def _traceback_file(err: BaseException) -> str | None:
    """A job without a run directory keeps a failure's traceback in <project tmp>/logs/<script>-<time>-<pid>.log
    (printed on stderr instead when that cannot be written). Returns the file's path."""
    import os
    import time

    from reasoner_ray.paths import project_dirs

    script = os.path.splitext(os.path.basename(sys.argv[0] or "job"))[0] or "job"
    path = os.path.join(project_dirs()["tmp"], "logs", f"{script}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            traceback.print_exception(err, file=fh)
        return path
    except OSError:
        traceback.print_exception(err, file=sys.stderr)
        return None


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
            log_path = log_path or getattr(_failure_log.handlers[0], "baseFilename", None)
        else:  # no run directory to keep it in
            log_path = _traceback_file(err)
        for_people = isinstance(root_cause(err), JobError)  # a message that already says what to do
        details = f" (traceback in {log_path})" if log_path and not for_people else ""
        print(f"error: {one_line(err)}{details}", file=sys.stderr, flush=True)
        return err.exit_code if isinstance(err, JobError) else 1
