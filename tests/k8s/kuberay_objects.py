"""Shared pieces of the tests/k8s checks: where things are in the image and the pods, and accessors for
the rendered RayJob / RayService / RayCluster objects (the three kinds nest the same cluster spec differently).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from reasoner_ray.core.config import Config, load_config
from reasoner_ray.k8s.render import REPO_ROOT, VARIANTS, overlay_dir
from reasoner_ray.k8s.schema import crd_dir  # noqa: F401  ($KUBERAY_CRDS_DIR, else k8s/crds/ in the repo)

IMAGE_ROOT = "/home/ray/reasoner-ray"  # where docker/Dockerfile installs the repo (its WORKDIR)
SHARED_MOUNT = "/mnt/shared"  # the PVC every Ray pod mounts
CONFIGS_MOUNT = "/etc/reasoner/configs"  # the generated ConfigMap, on heads
SECRETS = {"reasoner-teacher": {"api-key"}, "reasoner-serve-keys": {"api-keys"}, "reasoner-ray-auth": {"auth_token"}}
RENDERED = {"base": REPO_ROOT / "k8s" / "base", **{v: overlay_dir(v) for v in VARIANTS}}


def pinned_ray_version() -> str:
    text = (REPO_ROOT / "requirements" / "common.txt").read_text()
    return re.search(r"^ray\[[^\]]*\]==(\S+)", text, re.M).group(1)


CLUSTER_SPEC_FIELD = {"RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}  # RayCluster: spec itself


def cluster_spec(doc: dict) -> dict:
    """The cluster spec inside any of the three kinds."""
    field = CLUSTER_SPEC_FIELD.get(doc["kind"])
    return doc["spec"][field] if field else doc["spec"]


def groups(spec: dict) -> list[tuple[str, dict, dict]]:
    """(group name, group spec, pod spec) for the head and each worker group."""
    head = spec["headGroupSpec"]
    return [("head", head, head["template"]["spec"])] + [
        (g["groupName"], g, g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])
    ]


def gpus(pod: dict) -> int:
    return sum(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) for c in pod["containers"])


def cpus(pod: dict) -> float:
    raw = [str(c["resources"]["limits"]["cpu"]) for c in pod["containers"]]
    return sum(float(r[:-1]) / 1000 if r.endswith("m") else float(r) for r in raw)


def job_command(job: dict) -> tuple[Path, str, list[str]]:
    """The RayJob entrypoint as (script in the repo, config file name, overrides)."""
    python, script, flag, config_path, *overrides = shlex.split(job["spec"]["entrypoint"])
    assert (python, flag) == ("python", "--config")
    assert script.startswith(IMAGE_ROOT + "/") and config_path.startswith(CONFIGS_MOUNT + "/")
    return REPO_ROOT / script[len(IMAGE_ROOT) + 1 :], config_path[len(CONFIGS_MOUNT) + 1 :], overrides


def job_config(job: dict) -> Config:
    _, name, overrides = job_command(job)
    return load_config(REPO_ROOT / "configs" / name, overrides)


def serve_app(service: dict) -> dict:
    (app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    return app


def mounts(pod: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for c in pod["containers"] for m in c.get("volumeMounts", [])}
