"""The loggers the project quiets stay quiet after vLLM configures its logging at engine start."""

from __future__ import annotations

import logging

from reasoner_ray.ray_utils import QUIET_LOGGERS, quiet_ray_loggers


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_vllm_cpu_worker_warning_stays_quiet_after_vllm_configures_logging():
    from vllm.config.logging import LoggingConfig
    from vllm.logger import configure_logging

    name = "vllm.v1.worker.cpu_worker"
    assert QUIET_LOGGERS[name] == logging.ERROR
    quiet_ray_loggers()
    logger = logging.getLogger(name)
    configure_logging(LoggingConfig())  # what every vLLM engine core does when it starts: resets child levels
    records = _Records()
    logger.addHandler(records)
    try:
        logger.warning("CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it.")
        logger.error("an error still shows")
    finally:
        logger.removeHandler(records)
    assert records.messages == ["an error still shows"]
    quiet_ray_loggers()  # idempotent: one filter however often the hook runs
    assert sum(type(f).__name__ == "_AtLeast" for f in logger.filters) == 1
