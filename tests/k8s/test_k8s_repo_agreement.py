"""The KubeRay manifests agree with the repo: the files and import path they name exist and load, versions
equal the Ray pin, the Dockerfile's inputs exist, every config is in the ConfigMap, objects carry their labels.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from kuberay_objects import (
    CONFIGS_MOUNT,
    IMAGE_ROOT,
    RENDERED,
    SHARED_MOUNT,
    cluster_spec,
    groups,
    job_command,
    job_config,
    mounts,
    pinned_ray_version,
    serve_app,
)

from reasoner_ray.core.config import ServeConfig
from reasoner_ray.core.rundir import round_stage, stage_dir
from reasoner_ray.pipeline.iterative import MODEL_DIR
from reasoner_ray.k8s.render import REPO_ROOT


def test_versions_equal_the_ray_pin(rendered):
    version = pinned_ray_version()
    for variant, objects in rendered.items():
        suffix = "-gpu" if variant == "gpu" else "-cpu"
        for kind in ("RayJob", "RayService", "RayCluster"):
            spec = cluster_spec(objects[kind])
            assert spec["rayVersion"] == version, (variant, kind)
            for name, _, pod in groups(spec):
                for container in pod["containers"]:
                    tag = container["image"].rsplit(":", 1)[1]
                    assert tag == f"{version}-py311{suffix}", (variant, kind, name, tag)
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert f"ARG RAY_VERSION={version}\n" in dockerfile
    assert "FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}" in dockerfile


def test_dockerfile_inputs_exist():
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert f"WORKDIR {IMAGE_ROOT}\n" in dockerfile
    assert "ARG PYTHON_TAG=py311\n" in dockerfile  # the project's Python (pyproject: >=3.11; setup: 3.11)
    assert 'requires-python = ">=3.11"' in (REPO_ROOT / "pyproject.toml").read_text()
    for variant in ("cpu", "gpu"):  # the VARIANT build arg picks requirements/<variant>.txt
        assert (REPO_ROOT / "requirements" / f"{variant}.txt").is_file()
    sources = re.findall(r"^COPY (?:--\S+ )*(\S+) \S+$", dockerfile, re.M)
    assert sources, "no COPY found"
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
    ignored = (REPO_ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".cache", "models", "runs"} <= set(ignored)


def test_configmap_holds_every_config(rendered):
    names = sorted(p.name for p in (REPO_ROOT / "configs").glob("*.yaml"))
    for variant, objects in rendered.items():
        assert sorted(objects["ConfigMap"]["data"]) == names, variant
        for name in names:
            assert objects["ConfigMap"]["data"][name] == (REPO_ROOT / "configs" / name).read_text()


@pytest.mark.parametrize("variant", list(RENDERED))
def test_job_entrypoint_names_files_that_exist(rendered, variant):
    job = rendered[variant]["RayJob"]
    script, name, _ = job_command(job)
    assert script.is_file(), script
    assert "def main(" in script.read_text()
    assert name in rendered[variant]["ConfigMap"]["data"]
    config = job_config(job)  # the config loads with the manifest's overrides
    assert config.run.dir.startswith(SHARED_MOUNT + "/runs/") and config.model.cache_dir.startswith(SHARED_MOUNT)
    head_pod = cluster_spec(job)["headGroupSpec"]["template"]["spec"]
    assert CONFIGS_MOUNT in mounts(head_pod)


def test_serve_import_path_imports(rendered):
    for variant, objects in rendered.items():
        module_name, attr = serve_app(objects["RayService"])["import_path"].split(":")
        assert callable(getattr(importlib.import_module(module_name), attr)), variant


@pytest.mark.parametrize("variant", list(RENDERED))
def test_serve_args_are_serve_config_fields(rendered, variant):
    service, job = rendered[variant]["RayService"], rendered[variant]["RayJob"]
    args = ServeConfig.model_validate(serve_app(service)["args"])  # extra="forbid": a typo fails here
    config = job_config(job)  # serves the model the job's last DPO round writes (reasoner_ray/core/rundir.py)
    last_dpo = stage_dir(round_stage(config.rounds, "dpo"))
    assert args.model_path == f"{config.run.dir}/{last_dpo}/output/{MODEL_DIR}"
    assert 1 <= args.min_replicas <= args.max_replicas
    key_dir = str(Path(args.api_keys_file).parent)
    for name, _, pod in groups(cluster_spec(service)):
        volume = {v["name"]: v for v in pod["volumes"]}[mounts(pod)[key_dir]["name"]]
        assert volume["secret"]["secretName"] == "reasoner-serve-keys", name
        assert mounts(pod)[SHARED_MOUNT].get("readOnly"), "the endpoint only reads the run dir"


def test_every_object_carries_its_part_label(rendered):
    """docs/kuberay.md applies one part at a time with `kubectl apply -k ... -l reasoner-ray/part=...`."""
    wanted = {"ConfigMap": "shared", "PersistentVolumeClaim": "shared", "RayJob": "job", "RayService": "serve"}
    wanted["RayCluster"] = "cluster"
    for variant, objects in rendered.items():
        for kind, part in wanted.items():
            assert objects[kind]["metadata"]["labels"]["reasoner-ray/part"] == part, (variant, kind)
