"""Command-line plumbing shared by the entry scripts in jobs/: `--config FILE` plus `key=value` overrides."""

from __future__ import annotations

import argparse
import logging
import sys

from reasoner_ray.core.config import Config, ConfigError, load_config


def parse_config(argv: list[str] | None, description: str) -> Config:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rounds=1 dpo.beta=0.2")
    args = parser.parse_args(argv)
    try:
        return load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as err:
        parser.exit(2, f"{err}\n")


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
