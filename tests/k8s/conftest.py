"""Fixtures of tests/k8s: the KubeRay CRD schemas and every variant of k8s/ rendered once per session."""

from __future__ import annotations

import pytest
from kuberay_objects import RENDERED, crd_dir

from reasoner_ray.k8s.render import render
from reasoner_ray.k8s.schema import CrdSchemas


@pytest.fixture(scope="session")
def crds() -> CrdSchemas:
    if not crd_dir().is_dir():
        pytest.fail(f"KubeRay CRDs not found at {crd_dir()}: KUBERAY_CRDS_DIR must name a folder of ray.io_*.yaml")
    return CrdSchemas(crd_dir())


@pytest.fixture(scope="session")
def rendered() -> dict[str, dict[str, dict]]:
    """variant -> kind -> the one object of that kind, as `kubectl apply -k` would send it."""
    out = {}
    for variant, folder in RENDERED.items():
        docs = render(folder)
        kinds = [d["kind"] for d in docs]
        assert sorted(kinds) == ["ConfigMap", "PersistentVolumeClaim", "RayCluster", "RayJob", "RayService"], kinds
        out[variant] = {d["kind"]: d for d in docs}
    return out
