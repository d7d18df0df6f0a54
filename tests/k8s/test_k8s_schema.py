"""The rendered KubeRay manifests validate against the real CRD schemas, and broken copies do not.

    pytest tests/k8s      (no cluster needed: kustomize from the pinned kubectl wheel, jsonschema)
"""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from kuberay_objects import RENDERED, cluster_spec, crd_dir, groups

from reasoner_ray.k8s.render import main as render_main
from reasoner_ray.k8s.render import overlay_dir


@pytest.mark.parametrize("variant", list(RENDERED))
def test_every_ray_object_validates_against_its_crd(rendered, crds, variant):
    for kind in ("RayJob", "RayService", "RayCluster"):
        assert crds.errors(rendered[variant][kind]) == [], f"{variant} {kind}"


BREAKAGES = {
    "misspelt field": (lambda d: cluster_spec(d)["headGroupSpec"].update(rayStartParms={}), "rayStartParms"),
    "wrong type": (lambda d: cluster_spec(d)["workerGroupSpecs"][0].update(replicas="two"), "replicas"),
    "missing required": (lambda d: cluster_spec(d)["workerGroupSpecs"][0].pop("groupName"), "groupName"),
    "bad enum": (lambda d: cluster_spec(d)["authOptions"].update(mode="tokens"), "mode"),
    "container without name": (lambda d: groups(cluster_spec(d))[0][2]["containers"][0].pop("name"), "name"),
    "bad name": (lambda d: d["metadata"].update(name="Reasoner_DPO"), "metadata.name"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
@pytest.mark.parametrize("kind", ["RayJob", "RayService", "RayCluster"])
def test_broken_copies_are_rejected(rendered, crds, kind, breakage):
    broken = copy.deepcopy(rendered["gpu"][kind])
    mutate, named = BREAKAGES[breakage]
    mutate(broken)
    errors = crds.errors(broken)
    assert errors and any(named in e for e in errors), errors


def test_render_check_cli_fails_on_a_broken_overlay(tmp_path, capsys):
    """The user-facing check (`python -m reasoner_ray.k8s.render DIR --check CRDS`) renders and refuses."""
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{os.path.relpath(overlay_dir('laptop'), tmp_path)}]\n"
        "patches:\n  - target: {kind: RayJob}\n    patch: |\n"
        "      - {op: add, path: /spec/shutdownAfterJobFinish, value: true}\n"
    )
    assert render_main([str(overlay_dir("laptop")), "--check", str(crd_dir())]) == 0
    assert render_main([str(tmp_path), "--check", str(crd_dir())]) == 1
    assert "shutdownAfterJobFinish" in capsys.readouterr().out


def test_no_unchecked_cel_fields(rendered):
    """jsonschema cannot run the CRDs' CEL rules; they only concern fields these manifests leave unset."""
    for variant, objects in rendered.items():
        for kind in ("RayJob", "RayService", "RayCluster"):
            text = yaml.safe_dump(objects[kind])
            for field in ("managedBy", "deletionStrategy", "gcsFaultToleranceOptions"):
                assert field not in text, (variant, kind, field)


def test_crd_schemas_are_pinned_in_the_repository(monkeypatch, tmp_path, capsys):
    """A clone with nothing beside it has the schemas (k8s/crds/, with their source and licence noted);
    KUBERAY_CRDS_DIR points the checks at another copy."""
    from reasoner_ray.k8s.render import REPO_ROOT
    from reasoner_ray.k8s.schema import CrdSchemas

    monkeypatch.delenv("KUBERAY_CRDS_DIR", raising=False)
    pinned = REPO_ROOT / "k8s" / "crds"
    assert crd_dir() == pinned
    assert "feeaf72facab4881ba2b179248bb67315634e229" in (pinned / "README.md").read_text()
    assert "Apache-2.0" in (pinned / "README.md").read_text()
    assert CrdSchemas(pinned).errors({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "x"},
                                      "spec": {"entrypoint": "true", "unknownField": 1}})
    assert render_main([str(overlay_dir("laptop")), "--check"]) == 0  # --check alone uses the pinned copy
    assert "RayJob/" in capsys.readouterr().out
    monkeypatch.setenv("KUBERAY_CRDS_DIR", str(tmp_path))
    assert crd_dir() == tmp_path


def test_nothing_reads_files_beside_the_repository():
    from reasoner_ray.k8s.render import REPO_ROOT

    beside = (".." + "/shared", "parent / " + '"shared"')  # spelt apart so this file does not match itself
    for folder in ("tests", "scripts", "reasoner_ray", "jobs", "serve", ".ci"):
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                text = path.read_text(errors="ignore")
                assert not any(b in text for b in beside), path
