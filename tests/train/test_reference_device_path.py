"""The GPU path's invariants, checked on the CPU: the reference pass takes the policy's numeric path (z = 0 on
equal weights under every pair layout x gradient_checkpointing combination); the sharded reference pass (Ray
tasks, one per worker) gives the same numbers as one pass; every collective of the training path goes through
collectives.py, which puts its tensor on the current CUDA device under NCCL; every model call of the training,
reference and verifier paths gets its tensors moved to the model's device."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

from conftest import make_pairs
from reasoner_ray.core.config import build_config
from reasoner_ray.train.collate import collate_pairs
from reasoner_ray.train.data import preference_examples, read_rows, write_rows
from reasoner_ray.train.logprobs import pair_logps
from reasoner_ray.train.model_setup import prepare_model
from reasoner_ray.train.reference import score_shard
from reasoner_ray.train.steps import dpo_pair_layout, pair_encoder

TRAIN = Path(__file__).resolve().parents[2] / "reasoner_ray" / "train"


@pytest.mark.parametrize("share_prompt,pack", [(True, True), (True, False), (False, False)])
@pytest.mark.parametrize("checkpointing", [True, False])
def test_reference_and_policy_give_z_zero_on_equal_weights(tiny_qwen2_vl, share_prompt, pack, checkpointing):
    config = build_config({}, [f"dpo.share_prompt={share_prompt}", f"dpo.pack_pairs={pack}",
                               f"train.gradient_checkpointing={checkpointing}", "dpo.beta=0.1"])
    examples = preference_examples(make_pairs(3))
    reference = score_shard(config.model_dump(mode="json"), tiny_qwen2_vl, examples, threads=2)
    policy, processor = prepare_model(tiny_qwen2_vl, config.model.dtype, config.train, False, False)  # train mode
    encoder = pair_encoder(processor, config)
    batch = collate_pairs(encoder, examples, config.train.max_length)
    chosen, rejected = pair_logps(policy, batch, encoder.pad_id, dpo_pair_layout(config, policy))
    z = config.dpo.beta * ((chosen - torch.tensor([c for c, _ in reference], dtype=chosen.dtype))
                           - (rejected - torch.tensor([r for _, r in reference], dtype=rejected.dtype)))
    assert torch.allclose(z, torch.zeros_like(z), atol=1e-5), z


@pytest.mark.ray
def test_sharded_reference_pass_equals_one_pass(tiny_qwen2_vl, tmp_path, ray_local):
    from reasoner_ray.core.rows import PreferenceRow
    from reasoner_ray.train.reference import compute_reference_logps

    config = build_config({}, ["train.num_workers=2"])
    pairs = make_pairs(5)
    write_rows(pairs, tmp_path / "pairs.jsonl")
    compute_reference_logps(config, tiny_qwen2_vl, str(tmp_path / "pairs.jsonl"), str(tmp_path / "ref.jsonl"))
    sharded = [(r.ref_chosen_logp, r.ref_rejected_logp) for r in read_rows(tmp_path / "ref.jsonl", PreferenceRow)]
    whole = score_shard(config.model_dump(mode="json"), tiny_qwen2_vl, preference_examples(pairs), threads=2)
    assert [r.question_id for r in read_rows(tmp_path / "ref.jsonl", PreferenceRow)] == [p.question_id for p in pairs]
    flat = lambda pairs: [v for pair in pairs for v in pair]  # noqa: E731
    # Shards pack other pairs together (other matrix shapes): equal up to a few fp32 ulps (1.5e-5 at 185).
    assert flat(sharded) == pytest.approx(flat(whole), rel=1e-6, abs=1e-5)


DIST_MODULES = {"dist", "torch.distributed", "deepspeed.comm", "comm"}  # names the training code imports them as
COLLECTIVES = {"all_reduce", "all_gather", "broadcast", "reduce", "reduce_scatter", "all_to_all", "gather", "scatter",
               "all_gather_into_tensor", "reduce_scatter_tensor"}


def test_every_collective_of_the_training_path_goes_through_collectives_py():
    calls = []
    for path in TRAIN.glob("*.py"):
        if path.name == "collectives.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in COLLECTIVES
                    and ast.unparse(node.func.value) in DIST_MODULES):
                calls.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}")
    assert not calls, f"collectives outside collectives.py (a CPU tensor there would fail under NCCL): {calls}"


def test_collective_tensors_go_to_the_cuda_device_under_nccl(monkeypatch):
    import torch.distributed as dist

    from reasoner_ray.train import collectives

    assert collectives.collective_device() == torch.device("cpu") and collectives.all_reduce_sum([1.5]) == [1.5]
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert collectives.collective_device() == torch.device("cuda", 3)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    assert collectives.collective_device() == torch.device("cpu")



class HostTensor(torch.Tensor):
    """A tensor as collation leaves it, on the host: what a GPU model must not be handed. Every op on it gives a
    HostTensor again, except a move (`.to(device)`, even to the device it is on), which gives a plain tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = super().__torch_function__(func, types, args, kwargs)
        moves = func is torch.Tensor.to and ("device" in kwargs
                                             or any(isinstance(a, (torch.device, str)) for a in args[1:]))
        return out.as_subclass(torch.Tensor) if moves else out


def _on_host(value):
    if isinstance(value, torch.Tensor):
        return value.as_subclass(HostTensor)
    if isinstance(value, Mapping):
        return {k: _on_host(v) for k, v in value.items()}
    return value


def _host_tensor_names(value, name=""):
    if isinstance(value, HostTensor):
        yield name
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _host_tensor_names(v, f"{name}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _host_tensor_names(v, f"{name}[{i}]")


@pytest.fixture(scope="module")
def checked_model(tiny_qwen2_vl):
    """The tiny model with a pre-hook that records every tensor handed to it that was never moved to its device."""
    from reasoner_ray.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(tiny_qwen2_vl)
    unmoved: list[str] = []
    model.register_forward_pre_hook(lambda module, args, kwargs: unmoved.extend(_host_tensor_names((args, kwargs))),
                                    with_kwargs=True)
    return model, processor, unmoved


@pytest.mark.parametrize("overrides", [["dpo.share_prompt=true"], ["dpo.pack_pairs=true"],
                                       ["dpo.share_prompt=false"], ["train.gradient_checkpointing=true"]])
def test_training_and_reference_paths_move_every_tensor_to_the_model(checked_model, overrides, monkeypatch):
    """A CPU tensor handed to a GPU model fails ("Expected all tensors to be on the same device"), and on the CPU
    nothing shows it: batches here come out of collation as HostTensors, and every model call of the training step
    (SFT and DPO, every pair layout), the reference pass and the verifier's log-probs must get moved ones."""
    from conftest import make_vqa_rows
    from reasoner_ray.train import collate
    from reasoner_ray.train.data import sft_examples
    from reasoner_ray.train.reference import reference_logps, response_logps
    from reasoner_ray.train.steps import RECIPES

    model, processor, unmoved = checked_model
    for name in ("collate_pairs", "concat_sequences"):  # the reference and verifier paths collate inside
        real = getattr(collate, name)
        monkeypatch.setattr(collate, name, lambda *a, real=real: _on_host(real(*a)))
    real_tensor = torch.tensor  # and a tensor built after the move without a device is on the host too
    monkeypatch.setattr(torch, "tensor", lambda *a, **kw: real_tensor(*a, **kw).as_subclass(
        torch.Tensor if kw.get("device") is not None else HostTensor))
    config = build_config({}, overrides)
    encoder = pair_encoder(processor, config)
    examples = preference_examples(make_pairs(2))
    for ex in examples:
        ex["ref_chosen_logp"], ex["ref_rejected_logp"] = -30.0, -31.0
    sft_batch = collate.collate_sft(encoder, sft_examples(make_vqa_rows(2), include_direct=True), 512)
    assert list(_host_tensor_names(_on_host(sft_batch)))  # the check sees unmoved tensors
    paths = {
        "sft step": lambda: RECIPES["sft"].loss(model, _on_host(sft_batch), encoder, config),
        "dpo step": lambda: RECIPES["dpo"].loss(model, collate.collate_pairs(encoder, examples, 512), encoder, config),
        "reference pass": lambda: reference_logps(model, encoder, examples, 2, 512, dpo_pair_layout(config, model)),
        "verifier log-probs": lambda: response_logps(model, encoder, [(examples[0], "a red circle")], 512),
    }
    found = {}
    for name, run in paths.items():
        unmoved.clear()
        run()
        found[name] = sorted(set(unmoved))
    assert found == {name: [] for name in paths}


def test_a_deepspeed_engine_names_the_device_batches_go_to():
    """Under ZeRO-3 with parameter offload the parameters sit on the CPU while the engine computes on its GPU:
    the engine's `device` wins over its parameters'."""
    from reasoner_ray.train.collate import on_model_device

    engine = torch.nn.Linear(2, 2)  # parameters on the CPU
    engine.device = torch.device("meta")
    batch = {"prompt": {"input_ids": torch.ones(1, 3, dtype=torch.long)}, "completions": [[1, 2]],
             "completion_ids": torch.ones(2, 2, dtype=torch.long)}
    moved = on_model_device(batch, engine)
    assert moved["prompt"]["input_ids"].device.type == moved["completion_ids"].device.type == "meta"
    assert moved["completions"] == [[1, 2]]
    assert batch["prompt"]["input_ids"].device.type == "cpu"  # the caller's batch is left as it was


@pytest.mark.ray
def test_a_ray_task_given_no_gpu_sees_none(ray_local):
    """Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for a task with num_gpus=0, and the engines and models pick
    CPU or GPU by what torch sees: the project's Ray hides the GPUs from such tasks."""
    import os

    @ray_local.remote(num_gpus=0)
    def visible():
        return os.environ.get("CUDA_VISIBLE_DEVICES")

    assert ray_local.get(visible.remote()) == ""
