"""Command-line plumbing shared by the entry scripts in jobs/: `--config FILE` plus `key=value` overrides."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from reasoner_ray.core.config import Config, ConfigError, load_config


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


def log_to_run_dir(run_dir: str) -> str | None:
    """Also write the driver's log to <run dir>/logs/driver.log (local run directories; Ray's own logs stay in
    its session folder). Returns the file's path, or None for a URI run directory."""
    from pathlib import Path

    if "://" in run_dir:
        return None
    path = Path(run_dir) / "logs" / "driver.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return str(path)
