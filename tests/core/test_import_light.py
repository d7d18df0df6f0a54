"""Importing the pure core (and the public reward API) loads no heavy engine."""

import subprocess
import sys

HEAVY = ("ray", "vllm", "deepspeed", "torch", "transformers")


def test_core_imports_no_engine():
    code = (
        "import sys, pkgutil, importlib, reasoner_ray.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'reasoner_ray.core.'): importlib.import_module(m.name)\n"
        "import reasoner_ray.core.reward\n"
        f"print(','.join(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core imported heavy engines: {out.stdout.strip()}"
