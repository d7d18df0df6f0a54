"""Failures a user can act on. The job prints `str(err)` as one line (what failed, why, what to do), keeps the
traceback in the run's log file, and exits with `exit_code` (see docs/resuming.md). Pure: no I/O."""

from __future__ import annotations

import re


class JobError(Exception):
    """A failure with a one-line message naming the setting or the action that fixes it."""

    exit_code = 1


class PreflightError(JobError):
    """A check before any long stage failed: a setting is wrong (teacher, data, model)."""

    exit_code = 2


class RunDirBusy(JobError):
    """Another job holds the run directory's lock."""

    exit_code = 3


class StageFailed(JobError):
    """A stage raised: it is not recorded as completed, so the same command runs it again."""

    def __init__(self, stage: str, cause: BaseException):
        self.stage, self.cause = stage, cause
        self.exit_code = cause.exit_code if isinstance(cause, JobError) else 1
        super().__init__(f"stage {stage} failed: {one_line(cause)}")


# "ValueError: ...", "ray.exceptions.RayTaskError(KeyError): ...": the line of a traceback that names the error.
_ERROR_LINE = re.compile(r"^[\w.]+(\([\w.]+\))?(Error|Exception|Exit|Interrupt)\b.*:")


def root_cause(err: BaseException) -> BaseException:
    """The innermost error: follows `raise ... from` and the `.cause` Ray (and StageFailed) wrap errors in, and
    stops at the first JobError other than StageFailed, whose message is already written for people."""
    seen: set[int] = set()
    while id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, JobError) and not isinstance(err, StageFailed):
            return err
        inner = getattr(err, "cause", None)
        inner = inner if isinstance(inner, BaseException) else err.__cause__
        if inner is None:
            return err
        err = inner
    return err


def one_line(err: BaseException, limit: int = 400) -> str:
    """A JobError's own message; otherwise `Type: message` of the root cause, the telling line of a traceback
    embedded in the message (Ray puts workers' tracebacks there), cut to `limit` characters."""
    if isinstance(err, JobError):
        return " ".join(str(err).split())
    cause = root_cause(err)
    if isinstance(cause, JobError):
        return " ".join(str(cause).split())
    text = str(cause).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    telling = [ln for ln in lines if _ERROR_LINE.match(ln)]
    message = telling[-1] if telling else (lines[0] if lines else "")
    line = message if telling else f"{type(cause).__name__}: {message}" if message else type(cause).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
