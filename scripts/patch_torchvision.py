"""Make PyPI's torchvision importable beside a CPU-only torch (see docs/install.md).

Every torchvision wheel on PyPI for Linux x86_64 is a CUDA build. Beside the CPU torch its native ops do not
load, and `import torchvision` dies in `_meta_registrations` with
`RuntimeError: operator torchvision::nms does not exist` (which also breaks transformers' lazy imports). The
VLM path only needs torchvision's pure-Python transforms, so this patch imports the two registration modules
only when the native extension loaded. It runs only when the import fails in exactly that way, and is
idempotent (a patched file is recognised by its marker and left alone).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

MARKER = "# reasoner-ray: registrations only with native ops"
ORIGINAL = """from torchvision import (
    _autograd_registrations,
    _meta_registrations,
    datasets,"""
PATCHED = f"""{MARKER}
if extension._has_ops():
    from torchvision import _autograd_registrations, _meta_registrations  # noqa: F401
from torchvision import (
    datasets,"""


def import_error() -> str:
    proc = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    return "" if proc.returncode == 0 else proc.stderr


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        print("torchvision: not installed, nothing to patch")
        return 0
    err = import_error()
    if not err:
        print("torchvision: imports cleanly, no patch needed")
        return 0
    if "torchvision::nms does not exist" not in err:
        print(f"torchvision: fails to import for another reason, not patching:\n{err}", file=sys.stderr)
        return 1
    init = Path(spec.origin)
    text = init.read_text()
    if MARKER in text:
        print(f"torchvision: {init} already patched but still fails:\n{err}", file=sys.stderr)
        return 1
    if ORIGINAL not in text:
        print(f"torchvision: {init} has an unexpected layout; cannot patch", file=sys.stderr)
        return 1
    init.write_text(text.replace(ORIGINAL, PATCHED, 1))
    err = import_error()
    if err:
        print(f"torchvision: still fails after the patch:\n{err}", file=sys.stderr)
        return 1
    print(f"torchvision: patched {init} (pure-Python transforms only; native ops unavailable on CPU torch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
