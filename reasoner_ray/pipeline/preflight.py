"""Checks before any long stage: each data source the remaining stages read opens and yields a valid row, the
base model folder loads while a remaining stage starts from it (config, processor, weight files), a URI run
directory is not used on a multi-node cluster (see check_storage), and with GPUs every stage's ask fits the
cluster's GPUs (check_gpu_fit: a worker group or engine pool that cannot be placed waits forever). A failure is
a PreflightError naming the setting to fix. The teacher is checked by the distill stage itself
(distill/preflight.py), once its local stand-in is up.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasoner_ray.core.config import Config, DataSource
from reasoner_ray.core.errors import PreflightError, one_line
from reasoner_ray.core.rundir import Manifest

log = logging.getLogger(__name__)


def _sources_needed(config: Config, manifest: Manifest) -> dict[str, DataSource]:
    needed = {}
    trains_on_rows = config.sft.enabled and not config.distill.enabled and not manifest.done("sft")
    distills = config.distill.enabled and not manifest.done("distill")
    rolls_out = any(not manifest.done(f"r{r}/rollouts") for r in range(1, config.rounds + 1))
    if trains_on_rows or distills or rolls_out:
        needed["data.train"] = config.data.train
    evaluates = (config.sft.enabled and not manifest.done("r0/eval")) or any(
        not manifest.done(f"r{r}/eval") for r in range(1, config.rounds + 1))
    if evaluates:
        needed["data.eval"] = config.data.eval
    return needed


def _base_model_needed(config: Config, manifest: Manifest) -> bool:
    """SFT starts from the base model, or round 1 when SFT is off; once SFT is done the rounds start from its
    output, so a resumed run (or a distillation-only one) never loads the base model and need not check it."""
    if config.sft.enabled:
        return not manifest.done("sft")
    return config.rounds > 0


def check_sources(sources: dict[str, DataSource]) -> None:
    """Each source (keyed by its setting, e.g. `data.train`) opens and yields a valid row; every source that
    does not is named in one error, so one run of the job lists all the paths to fix."""
    from reasoner_ray.data.readers import NoGoodRow, first_good_row

    failures = []
    for key, source in sources.items():
        where = f"{key} (format {source.format}" + (f", path {source.path})" if source.path else ")")
        try:
            first_good_row(source)
        except (NoGoodRow, OSError, ValueError) as err:
            failures.append(f"{where}: {err}")
    if failures:
        raise PreflightError("; ".join(failures))


def check_data(config: Config, manifest: Manifest) -> None:
    check_sources(_sources_needed(config, manifest))


def check_model(config: Config, path: str, setting: str | None = None) -> None:
    """`setting`: how the user named the folder (default: model.path, or the tiny model when that is unset)."""
    from transformers import AutoConfig, AutoProcessor

    setting = setting or (f"model.path={path}" if config.model.path else f"the tiny model at {path}")
    folder = Path(path)
    # A hub id is `name` or `org/name`; anything else is a folder, and a missing one is said as such (the hub
    # client would call it a malformed repo id).
    if (path.startswith(("/", ".", "~")) or path.count("/") > 1) and not folder.expanduser().exists():
        raise PreflightError(f"{setting}: no such folder")
    try:
        AutoConfig.from_pretrained(path)
        AutoProcessor.from_pretrained(path)
    except Exception as err:  # noqa: BLE001 - any loader failure means the same thing to the user
        raise PreflightError(f"{setting} does not load ({one_line(err)}): point it at a Hugging Face model "
                             f"folder (config.json, processor files, weights)") from err
    if folder.is_dir() and not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise PreflightError(f"{setting} has no weight files (*.safetensors or *.bin)")


def check_input_path(flag: str, path: str) -> None:
    """A file or folder a job reads, named by the flag that gave it."""
    if not Path(path).exists():
        raise PreflightError(f"{flag} {path}: no such file or folder")


def check_storage(config: Config, alive_nodes: int) -> None:
    """A URI run directory is mirrored on the driver's local disk (storage.RunDir) while rollouts, training and
    exports write from whichever node runs them: on more than one node their files would land on disks the
    driver never reads. A path every node mounts is what a multi-node cluster needs."""
    if "://" in config.run.dir and alive_nodes > 1:
        raise PreflightError(
            f"run.dir={config.run.dir} is a URI, which works on a single node only (stages on other nodes write into "
            f"a local mirror the driver cannot see); this cluster has {alive_nodes} nodes: set run.dir to a path every "
            f"node mounts (NFS, a ReadWriteMany volume)")


def gpu_misfits(config: Config, total_gpus: float, most_on_a_node: float, serve: bool = False) -> list[str]:
    """What the config asks of GPUs that the cluster (`total_gpus`, `most_on_a_node` on its largest node) cannot
    give at once; empty when everything fits. Pure. `serve`: check the endpoint's replicas instead of the job's."""
    if serve:
        s = config.serve
        need = s.min_replicas * s.replica_gpus
        if s.replica_gpus > most_on_a_node:
            return [f"serve.replica_gpus={s.replica_gpus:g} is more than any node has ({most_on_a_node:g})"]
        return [] if need <= total_gpus else [
            f"serve.min_replicas x serve.replica_gpus = {s.min_replicas} x {s.replica_gpus:g} GPUs, the cluster has "
            f"{total_gpus:g}"]
    if not config.train.use_gpu:
        return []
    if total_gpus == 0:
        return ["train.use_gpu is true but the cluster has no GPU"]
    found = []
    if config.train.num_workers > total_gpus:
        found.append(f"train.num_workers={config.train.num_workers} (one GPU each), the cluster has {total_gpus:g}")
    r = config.rollout
    if r.tensor_parallel_size > most_on_a_node:
        found.append(f"rollout.tensor_parallel_size={r.tensor_parallel_size} is more than any node has "
                     f"({most_on_a_node:g}; an engine's GPUs are on one node)")
    if r.num_engines * r.tensor_parallel_size > total_gpus:
        found.append(f"rollout.num_engines x rollout.tensor_parallel_size = {r.num_engines} x {r.tensor_parallel_size} "
                     f"GPUs, the cluster has {total_gpus:g}")
    return found


def check_gpu_fit(config: Config, serve: bool = False) -> None:
    """Refuse a job whose GPU asks the running cluster cannot meet (see gpu_misfits); `train.check_gpu_fit:
    false` skips it (an autoscaler that adds GPU nodes on demand)."""
    if not config.train.check_gpu_fit or (not config.train.use_gpu and not serve):
        return
    import ray

    gpus = [node.get("Resources", {}).get("GPU", 0.0) for node in ray.nodes() if node["Alive"]]
    misfits = gpu_misfits(config, sum(gpus), max(gpus, default=0.0), serve)
    if misfits:
        raise PreflightError("the GPU asks do not fit this cluster (Ray would wait for them forever): "
                             + "; ".join(misfits) + ". Lower them, add GPU nodes, or with an autoscaler that adds "
                             "GPU nodes on demand set train.check_gpu_fit=false")


def _alive_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node["Alive"]) if ray.is_initialized() else 1


def preflight(config: Config, manifest: Manifest, model_path: str) -> None:
    check_storage(config, _alive_nodes())
    check_gpu_fit(config)
    check_data(config, manifest)
    checks_model = _base_model_needed(config, manifest)
    if checks_model:
        check_model(config, model_path)
    log.info("preflight: data sources%s", " and model load" if checks_model else "")
