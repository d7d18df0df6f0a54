"""Joining or starting Ray the same way from every entry script.

Under `ray job submit` (RAY_ADDRESS or a job's runtime context is set) the script joins the cluster with a plain
`ray.init()` (arguments such as num_cpus are rejected there). Run directly, it starts a private local Ray with
`address="local"` so a stale `ray_current_cluster` file from an earlier `ray stop` is never joined by mistake.
Either way workers' output stays in Ray's session logs (`log_to_driver=False`): the console is the project's
progress lines, and `link_session_logs` puts a link to those logs in the run directory.
"""

from __future__ import annotations

import logging
import os

from reasoner_ray.paths import project_dirs

# Chatter that says nothing a user can act on. Ray Train's placement-group cleaner warns every poll when the
# state API is off (no dashboard in-process); Ray Data logs each dataset's start and end at INFO.
# Their full logs stay in Ray's session folder (<tmp>/ray/session_*/logs).
QUIET_LOGGERS = {
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": logging.ERROR,
    "ray.data": logging.WARNING,
    # vLLM's CPU worker replaces torch.set_num_threads with a warning, and every tokenizer/processor call that
    # sets threads then logs it: 8,098 identical lines in one quickstart. The engine's cores are pinned anyway.
    "vllm.v1.worker.cpu_worker": logging.ERROR,
    # openai's HTTP transport logs every request at INFO (the teacher preflight's one request included).
    "httpx": logging.WARNING,
    "httpx2": logging.WARNING,
}


QUIET_HOOK = "reasoner_ray.ray_utils.quiet_ray_loggers"


class _AtLeast(logging.Filter):
    """Drops a logger's records below a level. A level alone does not hold: vLLM's engine start runs
    `logging.config.dictConfig`, which resets the level of every existing `vllm.*` logger but keeps its filters."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def quiet_ray_loggers() -> None:
    """Runs in the driver and, as Ray's `worker_process_setup_hook`, in every worker process."""
    try:  # first: importing Ray Data configures its loggers
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    except ImportError:  # a worker without Ray Data installed
        pass
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(f, _AtLeast) for f in logger.filters):
            logger.addFilter(_AtLeast(level))


FOOTER_ACTORS = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"


def init_ray(num_cpus: int | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    quiet_ray_loggers()
    _ray_logs_through_the_job()
    env_vars = {
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        # Ray Train's controller drains each worker's one-slot result queue only when it polls (every 2 s by
        # default), so a worker reporting more often than that waits: measured 1.9 s of stall per logged step.
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"),
        # A task or actor given no GPU sees none (Ray 2.60 no longer empties CUDA_VISIBLE_DEVICES for them): the
        # engines and models decide CPU or GPU by what torch sees, so a CPU-only stage stays off the GPUs.
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1",
        # Ray Data 2.60 reads Parquet footers with a pool of 32 actors per read (made for many remote files); the
        # stages read a few local files, and 32 worker processes starting on a small node cost seconds per read.
        FOOTER_ACTORS: os.environ.get(FOOTER_ACTORS, "2"),
    }
    os.environ[FOOTER_ACTORS] = env_vars[FOOTER_ACTORS]  # the driver plans reads too
    # Pass hub settings through (tests and the quickstart run offline; a cluster may download models).
    env_vars.update({k: os.environ[k] for k in ("HF_HUB_OFFLINE", "HF_HOME", "REASONER_CACHE_ROOT") if k in os.environ})
    if os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"):
        ray.init(runtime_env={"env_vars": env_vars, "worker_process_setup_hook": QUIET_HOOK}, log_to_driver=False)
        _link_into_job_logs()
        return
    tmp = project_dirs()["tmp"]
    os.makedirs(tmp, exist_ok=True)
    ray.init(
        address="local",
        num_cpus=num_cpus,
        # No dashboard: its agent binds fixed ports (52365, ...) that a `ray start` cluster on the same machine
        # also needs; Ray Train only logs that its state queries are unavailable.
        include_dashboard=False,
        runtime_env={"env_vars": env_vars, "worker_process_setup_hook": QUIET_HOOK},
        _temp_dir=os.path.join(tmp, "ray"),
        log_to_driver=False,  # workers' output (vLLM, DeepSpeed, Ray Train) stays in the session's logs
    )
    # Ray's own helper processes (e.g. Ray Train's placement-group cleaner) call ray.init() without an
    # address; with other Ray instances on the machine they must be told which one is ours.
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    _link_into_job_logs()


def _ray_logs_through_the_job() -> None:
    """In the driver, Ray's own loggers go through the job's handlers (the console shows their errors only, the job's
    log file keeps the rest) instead of the stderr handlers Ray gives them."""
    for name in ("ray", "ray.data", "ray.train", "ray.serve"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)]
        logger.propagate = True


def _link_into_job_logs() -> None:
    """The session's logs linked into the job's log folder."""
    from reasoner_ray.job_log import log_folder

    folder = log_folder()
    if folder is not None:
        link_session_logs(folder)


def session_logs() -> str | None:
    """The folder of this Ray session's logs on the driver's node (every worker's output on that node)."""
    try:
        import ray

        return os.path.join(ray._private.worker._global_node.get_session_dir_path(), "logs")
    except Exception:  # noqa: BLE001 - not started, or a Ray without this internal: nothing to link
        return None


def link_session_logs(folder: str) -> str | None:
    """`<folder>/ray`: a link to this Ray session's logs, where the engines' and trainers' output is. Returns it."""
    target = session_logs()
    if target is None:
        return None
    link = os.path.join(folder, "ray")
    os.makedirs(folder, exist_ok=True)
    if os.path.islink(link):
        os.remove(link)
    elif os.path.exists(link):  # not ours to replace
        return None
    os.symlink(target, link)
    return link
