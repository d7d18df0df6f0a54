"""The typed config: YAML + dotted overrides, round trip, and rejection that names the key."""

from pathlib import Path

import pytest
import yaml

from reasoner_ray.core.config import Config, ConfigError, build_config, dump_config, load_config, parse_override

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_and_overrides():
    cfg = build_config({}, ["dpo.beta=0.2", "rollout.temperatures=[0.7, 1.3]", "model.path=null", "rounds=3"])
    assert cfg.dpo.beta == 0.2
    assert cfg.rollout.temperatures == [0.7, 1.3]
    assert cfg.model.path is None
    assert cfg.rounds == 3


def test_round_trip_through_yaml(tmp_path):
    cfg = build_config({}, ["pairs.truncate_words=90", "train.zero_stage=3", "data.train.limit=10"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again == cfg
    assert again.pairs.accuracy_band == (0.25, 0.85)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["dpo.betta=0.1"], "dpo.betta: unknown key"),
        (["dpo.beta=abc"], "dpo.beta"),
        (["train.zero_stage=4"], "train.zero_stage"),
        (["nonsense.x=1"], "nonsense: unknown key"),
        (["pairs.accuracy_band=[0.9, 0.1]"], "pairs"),
        (["data.train.format=csv"], "data.train.format"),
        # combinations training would ignore or refuse only after the run (LoRA is merged at export)
        (["train.lora_rank=8", "train.zero_stage=3"], "train.lora_rank"),
        (["train.offload_params=true", "train.zero_stage=2"], "train.offload_params"),
        (["train.offload_optimizer=true", "train.zero_stage=0"], "train.offload_optimizer"),
        (["train.use_gpu=true", "model.dtype=float16"], "model.dtype float16"),  # DeepSpeed would train in bf16
        (["dpo.replay_rounds=2", "dpo.reference=previous"], "dpo.replay_rounds needs dpo.reference: sft"),
        (["dpo.replay_rounds=-1"], "dpo.replay_rounds"),
        (["dpo.epochs=[]"], "dpo.epochs must be a positive number or a non-empty list"),
        (["dpo.epochs=[2, 0]"], "dpo.epochs must be a positive number or a non-empty list"),
        (["dpo.epochs=0"], "dpo.epochs"),
    ],
)
def test_rejects_with_key_name(overrides, key):
    with pytest.raises(ConfigError) as err:
        build_config({}, overrides)
    assert key in str(err.value)


def test_yaml_unknown_key_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sft": {"learning_rate": 1e-5}}))
    with pytest.raises(ConfigError, match=r"sft\.learning_rate: unknown key"):
        load_config(path)


def test_unreadable_config_files_and_override_values_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: [1\n")
    with pytest.raises(ConfigError, match=rf"config file {bad} is not valid YAML: .* at line 2"):
        load_config(bad)
    with pytest.raises(ConfigError, match=rf"config file {tmp_path}: is a folder"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=rf"config file {tmp_path / 'nope.yaml'}: does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"override 'rounds=\[1': the value is not valid YAML"):
        build_config({}, ["rounds=[1"])


def test_override_syntax():
    assert parse_override("a.b=1") == ("a.b", 1)
    assert parse_override("a=x=y") == ("a", "x=y")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("novalue")
    with pytest.raises(ConfigError, match="is a value"):
        build_config({"rounds": 1}, ["rounds.x=1"])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    assert isinstance(cfg, Config)


def test_gpu_configs_describe_gpu_settings():
    paper = load_config(CONFIGS / "paper_llava_next_8b.yaml")
    assert paper.model.family == "llava_next" and paper.model.path == "llava-hf/llama3-llava-next-8b-hf"
    assert paper.train.use_gpu and paper.train.zero_stage == 3 and paper.dpo.ref_batch_size == 2
    assert paper.dpo.beta == 0.1 and paper.pairs.truncate_words == 90 and paper.rollout.temperatures == [1.0, 1.2]
    qwen = load_config(CONFIGS / "qwen2_5_vl_7b.yaml")
    assert qwen.model.path.startswith("Qwen/") and qwen.model.family == "qwen2_5_vl" and qwen.dpo.reference == "previous"


def test_gpu_asks_that_the_cluster_cannot_meet_are_named():
    from reasoner_ray.pipeline.preflight import gpu_misfits

    gpu = build_config({"train": {"use_gpu": True, "num_workers": 8},
                        "rollout": {"num_engines": 4, "tensor_parallel_size": 2}})
    assert gpu_misfits(gpu, total_gpus=8, most_on_a_node=8) == []
    assert gpu_misfits(gpu, total_gpus=0, most_on_a_node=0) == ["train.use_gpu is true but the cluster has no GPU"]
    found = gpu_misfits(gpu, total_gpus=4, most_on_a_node=1)
    assert found == ["train.num_workers=8 (one GPU each), the cluster has 4",
                     "rollout.tensor_parallel_size=2 is more than any node has (1; an engine's GPUs are on one node)",
                     "rollout.num_engines x rollout.tensor_parallel_size = 4 x 2 GPUs, the cluster has 4"]
    assert gpu_misfits(build_config({}), total_gpus=0, most_on_a_node=0) == []  # a CPU job asks no GPU
    serve = build_config({"serve": {"replica_gpus": 1, "min_replicas": 3}})
    assert gpu_misfits(serve, 2, 1, serve=True) == ["serve.min_replicas x serve.replica_gpus = 3 x 1 GPUs, the cluster has 2"]
    assert gpu_misfits(serve, 4, 2, serve=True) == []
    for name in ("paper_llava_next_8b", "qwen2_5_vl_7b"):  # the GPU configs fit the 8-GPU node they are written for
        config = load_config(f"configs/{name}.yaml")
        assert gpu_misfits(config, total_gpus=8, most_on_a_node=8) == [], name
    assert load_config("configs/paper_llava_next_8b.yaml").rollout.enforce_eager is False  # CUDA graphs on GPUs
