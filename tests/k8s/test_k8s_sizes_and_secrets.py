"""The KubeRay manifests keep secrets out, wire volumes and keys right, bound the job, probe the endpoint,
and size worker groups to the configs they run (GPUs for training workers and rollout engines).
"""

from __future__ import annotations

import re

import pytest
import yaml
from kuberay_objects import (
    RENDERED,
    SECRETS,
    SHARED_MOUNT,
    cluster_spec,
    cpus,
    gpus,
    groups,
    job_config,
    mounts,
    serve_app,
)

from reasoner_ray.core.config import ServeConfig


def test_no_secret_value_is_inlined(rendered):
    for variant, objects in rendered.items():
        assert "Secret" not in objects
        text = yaml.safe_dump(list(objects.values()))
        assert not re.search(r"sk-[A-Za-z0-9_-]{8,}|auth_token:\s*\S", text), variant
        for kind in ("RayJob", "RayService", "RayCluster"):
            spec = cluster_spec(objects[kind])
            assert spec["authOptions"] == {"mode": "token", "secretName": "reasoner-ray-auth"}
            for _, _, pod in groups(spec):
                for env in (e for c in pod["containers"] for e in c.get("env", [])):
                    if re.search(r"KEY|TOKEN|SECRET|PASSWORD", env["name"]):
                        ref = env["valueFrom"]["secretKeyRef"]
                        assert "value" not in env and ref["key"] in SECRETS[ref["name"]], env
                for volume in pod["volumes"]:
                    if "secret" in volume:
                        assert volume["secret"]["secretName"] in SECRETS


@pytest.mark.parametrize("variant", list(RENDERED))
def test_volumes_resolve_and_every_pod_sees_the_shared_volume(rendered, variant):
    objects = rendered[variant]
    for kind in ("RayJob", "RayService", "RayCluster"):
        for name, _, pod in groups(cluster_spec(objects[kind])):
            volumes = {v["name"]: v for v in pod["volumes"]}
            for mount in mounts(pod).values():
                assert mount["name"] in volumes, (kind, name, mount)
            assert volumes[mounts(pod)[SHARED_MOUNT]["name"]]["persistentVolumeClaim"]["claimName"] == (
                objects["PersistentVolumeClaim"]["metadata"]["name"]
            )
            for volume in volumes.values():
                if "configMap" in volume:
                    assert volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    if variant == "gpu":
        assert objects["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("variant", list(RENDERED))
def test_teacher_key_reaches_every_job_pod_under_the_configs_env_name(rendered, variant):
    job = rendered[variant]["RayJob"]
    wanted = job_config(job).teacher.api_key_env
    for name, _, pod in groups(cluster_spec(job)):
        env = {e["name"]: e for c in pod["containers"] for e in c.get("env", [])}
        assert env[wanted]["valueFrom"]["secretKeyRef"] == {"name": "reasoner-teacher", "key": "api-key"}, name


@pytest.mark.parametrize("variant", list(RENDERED))
def test_job_lifecycle_is_bounded(rendered, variant):
    spec = rendered[variant]["RayJob"]["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    assert spec["backoffLimit"] >= 0


@pytest.mark.parametrize("variant", list(RENDERED))
def test_service_workers_have_health_probes(rendered, variant):
    for name, _, pod in groups(cluster_spec(rendered[variant]["RayService"]))[1:]:
        probe = pod["containers"][0]["readinessProbe"]["httpGet"]
        assert (probe["path"], probe["port"]) == ("/healthz", 8000), name


# --- sizes against the configs ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(RENDERED))
def test_job_workers_fit_the_config(rendered, variant):
    job = rendered[variant]["RayJob"]
    config = job_config(job)
    spec = cluster_spec(job)
    (head, *workers) = groups(spec)
    assert gpus(head[2]) == 0, "the head runs no GPU work"
    gpu_total = sum(g["replicas"] * gpus(pod) for _, g, pod in workers)
    if config.train.use_gpu:
        assert gpu_total >= config.train.num_workers
        assert gpu_total >= config.rollout.num_engines * config.rollout.tensor_parallel_size
        for _, g, pod in workers:  # a multi-GPU engine must fit one pod (tensor parallel stays on a node)
            assert gpus(pod) == 0 or gpus(pod) % config.rollout.tensor_parallel_size == 0
    else:
        assert gpu_total == 0, "a CPU config gets a CPU-only cluster"
        head_cpus = 0 if head[1]["rayStartParams"].get("num-cpus") == "0" else cpus(head[2])
        assert head_cpus + sum(g["replicas"] * cpus(pod) for _, g, pod in workers) >= config.train.num_workers
    for _, g, _ in workers:  # a RayJob's cluster has a fixed size: the job asks for all of it
        assert g["minReplicas"] == g["replicas"] == g["maxReplicas"]


@pytest.mark.parametrize("variant", list(RENDERED))
def test_service_replicas_fit_the_worker_group(rendered, variant):
    service = rendered[variant]["RayService"]
    args = ServeConfig.model_validate(serve_app(service)["args"])
    spec = cluster_spec(service)
    workers = groups(spec)[1:]
    capacity = 0
    for _, g, pod in workers:
        per_pod = int(cpus(pod) // args.replica_cpus)
        if gpus(pod):  # each replica holds a GPU of its own (Ray sets its CUDA_VISIBLE_DEVICES)
            assert args.replica_gpus >= 1, "a replica without a GPU of its own would share or miss the pod's GPU"
            per_pod = min(per_pod, int(gpus(pod) // args.replica_gpus))
        capacity += g["maxReplicas"] * per_pod
    assert capacity >= args.max_replicas
    if variant == "gpu":
        assert spec["enableInTreeAutoscaling"] is True and service["spec"]["excludeHeadPodFromServeSvc"] is True
    else:
        assert all(gpus(pod) == 0 for _, _, pod in groups(spec)) and args.replica_gpus == 0
    if args.max_replicas > args.min_replicas:
        assert spec.get("enableInTreeAutoscaling"), "replicas can grow only if the cluster can"


@pytest.mark.parametrize("variant", list(RENDERED))
def test_interactive_cluster_shape(rendered, variant):
    spec = rendered[variant]["RayCluster"]["spec"]
    head, *workers = groups(spec)
    assert gpus(head[2]) == 0 and spec["enableInTreeAutoscaling"] is True
    by_kind = {"gpu" if gpus(pod) else "cpu": g for _, g, pod in workers}
    assert "cpu" in by_kind
    assert ("gpu" in by_kind) == (variant == "gpu")
    for g in by_kind.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] and g["minReplicas"] < g["maxReplicas"]
