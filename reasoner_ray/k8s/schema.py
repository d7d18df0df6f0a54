"""Validate ray.io objects offline against the KubeRay CRDs' openAPIV3Schema, as the API server would.

The CRD files (ray.io_rayclusters.yaml, ray.io_rayjobs.yaml, ray.io_rayservices.yaml, as published by
KubeRay) are pinned in the repository under k8s/crds/ (source commit and licence in its README);
$KUBERAY_CRDS_DIR points at another copy (`crd_dir()`). Two things make the check as strict as a real apply:
- unknown fields are errors: the schema is tightened with `additionalProperties: false` wherever it lists
  properties and allows nothing else, which is what `kubectl apply`'s default strict field validation does
  (the API server would otherwise drop a misspelt field silently);
- metadata.name must be a DNS-1123 label, since KubeRay derives Service and Pod names from it.
What jsonschema cannot run are the CRDs' CEL rules (x-kubernetes-validations); they concern only managedBy,
deletionStrategy and gcsFaultToleranceOptions, fields these manifests do not set (tests/k8s checks that).

    from reasoner_ray.k8s.schema import CrdSchemas, crd_dir
    CrdSchemas(crd_dir()).errors(manifest)   # [] when valid
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

from reasoner_ray.paths import PROJECT_ROOT

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 3 MB of YAML: the C loader is 10x faster
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
PINNED_CRD_DIR = PROJECT_ROOT / "k8s" / "crds"


def crd_dir() -> Path:
    """The CRD folder: $KUBERAY_CRDS_DIR when set, else the copy pinned in the repository."""
    override = os.environ.get("KUBERAY_CRDS_DIR")
    return Path(override) if override else PINNED_CRD_DIR


def forbid_unknown_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, changed in place so that every object with listed properties rejects fields it does not list."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in node and not open_ended:
            node["additionalProperties"] = False
        stack.extend(v for k, v in node.items() if k != "properties")
        stack.extend(node.get("properties", {}).values())
    return schema


class CrdSchemas:
    """The served schemas of the three KubeRay kinds, loaded on first use."""

    def __init__(self, crd_dir: str | Path):
        self.crd_dir = Path(crd_dir)
        missing = [name for name in CRD_FILES.values() if not (self.crd_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"KubeRay CRD files missing in {self.crd_dir}: {', '.join(missing)}")

    @property
    def _validators(self) -> dict[tuple[str, str], Draft7Validator]:
        return _load_validators(str(self.crd_dir.resolve()))

    def errors(self, manifest: dict[str, Any]) -> list[str]:
        """Every reason the API server would refuse `manifest`, as 'path: message' lines ([] when valid)."""
        key = (manifest.get("apiVersion"), manifest.get("kind"))
        validator = self._validators.get(key)
        if validator is None:
            return [f"<root>: no served CRD version for apiVersion={key[0]!r} kind={key[1]!r}"]
        found = [
            f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
        ]
        name = (manifest.get("metadata") or {}).get("name")
        if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.match(name):
            found.append(f"metadata.name: {name!r} is not a DNS-1123 label (lowercase alphanumerics and '-', <= 63)")
        return found


@lru_cache(maxsize=4)
def _load_validators(crd_dir: str) -> dict[tuple[str, str], Draft7Validator]:
    """(apiVersion, kind) -> validator, for every served version; parsed once per process (about 1 s)."""
    validators = {}
    for kind, filename in CRD_FILES.items():
        crd = yaml.load((Path(crd_dir) / filename).read_text(), Loader=_LOADER)
        group = crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = forbid_unknown_fields(version["schema"]["openAPIV3Schema"])
                validators[(f"{group}/{version['name']}", kind)] = Draft7Validator(schema)
    return validators
