"""One typed config for the whole pipeline, loaded from YAML with dotted `key=value` overrides.

Every section is a pydantic model with `extra="forbid"`, so an unknown key or a wrong type fails at load time
and the error names the dotted key (`dpo.beta: Input should be a valid number`). The same object is pickled
to Ray workers; nothing in it is a secret (API keys are named by environment variable, never stored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config that cannot be loaded; the message names the offending key."""


def round_entry(value: Any, round_index: int) -> Any:
    """A per-round setting's value for round `round_index` (1-based): a list's entry for that round, its last
    entry for every round after; any other value as it is."""
    if isinstance(value, list):
        return value[min(round_index, len(value)) - 1]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(_Section):
    dir: str = "runs/default"  # local path or pyarrow filesystem URI (s3://, gs://)
    seed: int = 0
    name: str = "default"


class TinyModelConfig(_Section):
    """Size of the locally built model when `model.path` is empty (no hub reachable)."""

    text_hidden_size: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    intermediate_size: int = 256
    vision_hidden_size: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    image_size: int = 64  # pixels per side the processor resizes to (a multiple of 2 * patch_size)
    patch_size: int = 8
    vocab_size: int = 1024
    max_position_embeddings: int = 2048
    # Multiplies the vision tower's initial weight matrices (HF initialises them with std 0.02, tuned for large
    # models). A tower this small, trained from scratch, passes shape features on to the language model only
    # when they start larger: single handwritten digits were learned to 87% in 300 steps at 20, not at all at 1.
    vision_init_scale: float = Field(default=1.0, gt=0)
    # One token per digit, as Qwen2's own tokenizer splits numbers. Off: the BPE learns whole numbers ("44") as
    # single tokens from the corpus, so sums are looked up rather than written digit by digit (docs/method.md).
    split_digits: bool = False


class ModelConfig(_Section):
    # the tiny model's family (model.path unset); docs/models.md lists what each is checked for
    family: Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava", "llava_next", "gemma3", "idefics3",
                    "internvl"] = "qwen2_vl"
    path: str | None = None  # local HF folder or hub id; None builds the tiny model below
    tiny: TinyModelConfig = TinyModelConfig()
    cache_dir: str = "models"  # where tiny models are built, keyed by their settings
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: fp32 on CPU, bf16 on GPU


class DataSource(_Section):
    # The paper's benchmarks (aokvqa ... mathvista) read their official files or HF parquet copies: data/benchmarks.py
    format: Literal["easy_vqa", "digits", "arithmetic", "jsonl", "parquet", "llava", "aokvqa", "chartqa", "scienceqa", "ai2d",
                    "docvqa", "infovqa", "textvqa", "mathvista"] = "easy_vqa"
    path: str | None = None  # file or folder; unused for easy_vqa, digits and arithmetic
    # validation: digits and arithmetic (carved from train) and the benchmarks that have one; testmini: MathVista
    split: Literal["train", "validation", "test", "testmini"] = "train"
    limit: int | None = None  # first N good rows (bad and duplicate-id rows before them are counted); None = all
    offset: int = Field(default=0, ge=0)  # skip the first N good rows (and the records among them) before `limit`
    image_root: str | None = None  # base folder for relative image paths
    answer_type: str = "open"  # for formats that carry no answer type (llava conversations)


class DataConfig(_Section):
    train: DataSource = DataSource()
    eval: DataSource = DataSource(split="test", limit=200)
    # Where settings are chosen, never data.eval: the verifier's vote temperatures and its best method, and the
    # SFT model's sampled chains diagnosed (stage r0/diagnose) when eval.samples > 0. None: no such choice.
    validation: DataSource | None = None
    # The paper's data regime (core/data_regime.py): teacher rationales for this fraction of data.train (its first
    # rows), short answers only for the rest, from which each round's rollouts take fresh questions.
    rationale_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    # With rationale_fraction < 1: SFT also trains on the short-answer pool's direct forms (else it trains on the
    # rationale pool alone, and the short-answer pool is only what the rounds sample and reward).
    short_answers_in_sft: bool = True

    @model_validator(mode="after")
    def _fraction_needs_limit(self) -> "DataConfig":
        if self.rationale_fraction < 1.0 and self.train.limit is None:
            raise ValueError("data.rationale_fraction < 1 needs data.train.limit (the rows it divides)")
        return self


class EndpointConfig(_Section):
    """An OpenAI-compatible endpoint the project calls: the teacher (section `teacher`) or a model under evaluation
    (`evaluate.endpoint`). Limits are totals over every actor that calls it."""

    base_url: str = ""
    model: str = ""
    # What the served model is, beyond its name (a deploy id, a checkpoint hash): part of every cached reply's key
    # and of what an evaluation's results are keyed by, so a model redeployed under the same name is called anew.
    revision: str = ""
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (never the key)
    concurrency: int = 64
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 60.0
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    # USD per million tokens: {"model": {"input": x, "output": y}}
    prices: dict[str, dict[str, float]] = Field(default_factory=lambda: {"gpt-4o-2024-05-13": {"input": 5.0, "output": 15.0}})


class TeacherConfig(EndpointConfig):
    base_url: str = "http://127.0.0.1:8301/v1"
    model: str = "local-teacher"
    api_key_env: str = "TEACHER_API_KEY"
    include_answer: bool = True  # show the teacher the annotated short answer (paper is ambiguous)
    temperature: float = 0.7
    max_tokens: int = 256
    seed: int | None = None  # sent to the endpoint (OpenAI and vLLM accept it) and part of the cache key
    start_local: bool = True  # start the project's stand-in teacher server when base_url is on loopback


class DistillConfig(_Section):
    enabled: bool = True
    cache_dir: str | None = None  # None: <run dir>/cache/teacher; a path every node sees, or a URI (s3://, gs://)
    num_actors: int = 1  # teacher-call actors; teacher.concurrency and the rate limits are split over them
    batch_size: int = 16  # rows per actor call; several calls run at once per actor (see pipeline/distillation.py)
    actor_num_cpus: float = 0.25  # the actors mostly wait on the network; 1 CPU each would starve a small node
    progress_every_s: float = 5.0
    ray_progress_bars: bool = False
    # The stage fails (and a rerun re-sends just those rows) when more than this fraction of rows got no answer
    # for transport reasons (connection, timeout, rate limit, 5xx, unreadable body) after all retries.
    max_failed_fraction: float = Field(default=0.01, ge=0.0, le=1.0)


class TrainConfig(_Section):
    """Settings shared by SFT and DPO (each stage has its own learning rate, batch and epochs)."""

    num_workers: int = 2
    use_gpu: bool = False
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    gradient_accumulation_steps: int = 1  # micro batch per worker = global batch / (num_workers x this)
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    freeze_vision: bool = False
    freeze_projector: bool = False
    gradient_checkpointing: bool = False
    checkpoint_every_steps: int = 50
    keep_checkpoints: int = 2
    max_failures: int = 2  # worker deaths Ray Train recovers from (resuming from the latest checkpoint)
    max_length: int = 512  # prompt + response tokens; a prompt that does not fit is filtered and counted
    log_every_steps: int = 5  # how often workers report metrics (metrics.jsonl, the tracker); the console shows ~10 lines
    tracker: Literal["tensorboard", "none"] = "tensorboard"
    lora_rank: int = 0  # > 0: train a LoRA adapter (peft) and merge it on export; 0: full fine-tuning
    lora_alpha: int = 16
    # Preflight: refuse a job whose GPU asks (workers, engines x tensor parallel, serve replicas) exceed the running
    # cluster's GPUs; false for an autoscaler that adds GPU nodes on demand
    check_gpu_fit: bool = True

    @model_validator(mode="after")
    def _combinations(self) -> "TrainConfig":
        # Refused here, at load, not after training: DeepSpeed would ignore the offloads silently, and a LoRA
        # adapter partitioned by ZeRO-3 cannot be merged at export (Ray Train would retry the whole run).
        if self.lora_rank > 0 and self.zero_stage == 3:
            raise ValueError("train.lora_rank > 0 needs train.zero_stage <= 2 (a ZeRO-3 LoRA adapter cannot be merged on export)")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("train.offload_params needs train.zero_stage 3 (only ZeRO-3 partitions parameters)")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("train.offload_optimizer needs train.zero_stage >= 1 (ZeRO-0 has no optimizer partition)")
        return self


class SFTConfig(_Section):
    enabled: bool = True
    lr: float = 5e-6
    vision_lr: float | None = 5e-7
    global_batch_size: int = 32
    epochs: float = 1.0
    steps: int | None = Field(default=None, ge=1)  # optimizer steps, overriding epochs (the ablation's equal budget)
    include_direct: bool = True  # mix in the same questions in direct form (paper)
    include_cot: bool = True  # the CoT form of rows with a rationale (off: the paper's direct-only ablation)


class RolloutConfig(_Section):
    samples_per_temperature: int = 16
    temperatures: list[float] = Field(default_factory=lambda: [1.0, 1.2])
    max_tokens: int = 256
    top_p: float = 1.0
    num_engines: int = 1
    # CPU only: cores each engine's threads are pinned to (disjoint per engine on a node); None = the node's
    # cores divided by num_engines. vLLM's own default pins every engine to the same cores.
    cpu_cores_per_engine: int | None = Field(default=None, ge=1)
    tensor_parallel_size: int = 1
    batch_size: int = 32  # questions per engine call
    max_model_len: int = 2048
    kv_cache_gib: float = 2.0  # VLLM_CPU_KVCACHE_SPACE on CPU
    gpu_memory_utilization: float = 0.85
    enforce_eager: bool = True
    limit: int | None = None  # questions per round; None = all of the train split
    # The main job: an evaluation's engines also generate what later stages sample from the same model (the round's
    # verifier chains, the next round's rollouts) in the same pass
    reuse_eval_engines: bool = True
    ignore_eos: bool = False  # fixed-length outputs (throughput benchmarks only)


class PairConfig(_Section):
    accuracy_band: tuple[float, float] = (0.25, 0.85)
    max_pairs_per_question: int = 3
    truncate_words: int | None = None  # paper's best: 90
    # Aim pairs at the step that goes wrong (core/pairs.py): longest shared word prefix first; cut k words past it.
    prefer_shared_prefix: bool = False
    cut_after_parting: int | None = Field(default=None, ge=1)
    # A correct chain whose own `a op b = c` statements are false somewhere is never chosen (core/reward/consistency.py)
    consistent_chosen: bool = False
    # Nor one its source's step checker calls lucky: a misread or a wrong step on the way to a guessed yes/no or
    # option (data/step_checks.py; it reads the row's annotation; sources without a checker are not filtered)
    sound_chosen: bool = False
    # Nor is a wrong chain rejected that the checker calls a misread, so pairs part at a step: DPO of the language
    # model cannot teach reading, and reading pairs taught misreads (docs/method.md). The verifier still sees them.
    steps_rejected: bool = False
    # false: nor one whose steps are all right and only its conclusion (option letter, yes/no) is wrong, which a
    # policy naming options at chance makes by luck (core/pairs.py)
    conclusions_rejected: bool = True
    # Only pairs that part on a token the policy found likely: the rejected token at most this many nats below the
    # chosen one (core/pairs.py); needs the rollouts' log-probs, which the rollouts then keep
    parting_logp_margin: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _band_ordered(self) -> "PairConfig":
        lo, hi = self.accuracy_band
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"accuracy_band must satisfy 0 <= low <= high <= 1, got {self.accuracy_band}")
        return self


class DPOConfig(_Section):
    loss: Literal["sigmoid", "ipo", "dpop"] = "sigmoid"
    beta: float = 0.1
    label_smoothing: float = 0.0
    dpop_lambda: float = Field(50.0, ge=0)  # loss dpop: the weight of the chosen chain's fall below its reference
    nll_weight: float = 0.0  # optional NLL term on the chosen response
    lr: float = 5e-7
    global_batch_size: int = 32
    # A list gives round r its r-th entry, the last one repeating for later rounds: a step that shrinks as the
    # policy moves away from the SFT model (configs/arithmetic.yaml).
    epochs: float | list[float] = 1.0
    reference: Literal["sft", "previous"] = "sft"  # paper: the frozen SFT model
    # The pairs of up to this many earlier rounds train again beside the round's own (their reference log-probs
    # are the SFT model's, so only with reference: sft). 0: each round learns from its own pairs, as the paper.
    replay_rounds: int = Field(0, ge=0)
    freeze_vision: bool = True
    freeze_projector: bool = True
    share_prompt: bool = True  # image + prompt once per pair (KV cache), not per response; see steps.dpo_pair_layout
    # With share_prompt: a micro-batch's prompts in one row, its responses in another, no pads. Off: it did not
    # pay reliably here (benchmarks/bench_dpo_packing.py: 0.91x and 1.03x the padded time in two runs).
    pack_pairs: bool = False
    ref_batch_size: int = 16  # pairs per forward in the reference log-prob pass
    # Rollouts keep each sampled token's log-prob; where the reference model sampled a chain, those are its
    # reference log-probs (no reference pass for that pair). Completions then end at the end-of-turn token the
    # engine stops on (the template's tokens after it are never sampled). False: TRL's layout, the whole
    # rendered turn, and a reference forward for every pair. See reasoner_ray/train/reference.py.
    reuse_sampled_logps: bool = True

    @model_validator(mode="after")
    def _epochs_are_positive(self) -> "DPOConfig":
        per_round = self.epochs if isinstance(self.epochs, list) else [self.epochs]
        if not per_round or any(e <= 0 for e in per_round):
            raise ValueError(f"dpo.epochs must be a positive number or a non-empty list of them, got {self.epochs}")
        return self

    def epochs_of_round(self, round_index: int) -> float:
        return round_entry(self.epochs, round_index)

    @model_validator(mode="after")
    def _replay_needs_a_fixed_reference(self) -> "DPOConfig":
        if self.replay_rounds and self.reference != "sft":
            raise ValueError("dpo.replay_rounds needs dpo.reference: sft (an earlier round's pairs carry the SFT "
                             "model's reference log-probs)")
        return self


class EvalConfig(_Section):
    max_tokens: int = 256
    styles: list[Literal["cot", "direct"]] = Field(default_factory=lambda: ["cot", "direct"])
    # The DPO model as a verifier (stage r<k>/verify): N sampled CoT chains per evaluation question, ranked by
    # the implicit reward against the DPO reference; 0 samples or verifier off skips the stage.
    samples: int = Field(default=0, ge=0)
    sample_temperature: float = 1.0
    verifier: bool = True
    verify_rounds: Literal["all", "last"] = "all"  # which rounds get the verify (and verifier) stages


class VerifierConfig(_Section):
    """The separate verifier (V-STaR, arXiv 2402.06457), stage r<k>/verifier: trained from the SFT model with plain
    DPO on correct vs incorrect chains of every round so far (reference: the SFT model), then ranking the verify
    stage's chains beside the policy. Trained in the rounds that verify (eval.samples > 0, eval.verify_rounds)."""

    enabled: bool = False
    lr: float = 5e-5
    beta: float = 0.1
    epochs: float = 2.0
    global_batch_size: int = 32
    max_pairs_per_question: int = 8  # correct x incorrect combinations per question (no accuracy band)
    # True: whole chains, as V-STaR trains (the verify stage scores whole chains); False: the round's aimed pairs
    # (`pairs.prefer_shared_prefix`, `pairs.cut_after_parting`), cut a few words after the parting step
    whole_chains: bool = False


class EvaluateConfig(_Section):
    """jobs/evaluate.py: benchmarks (name -> source) scored with each one's metric, for a model folder (vLLM, as
    the eval stage) or, when `endpoint.base_url` is set, an OpenAI-compatible endpoint. Styles, max_tokens and
    samples come from the `eval` section."""

    benchmarks: dict[str, DataSource] = Field(default_factory=dict)  # empty: data.eval, named "eval"
    endpoint: EndpointConfig = EndpointConfig()
    cache_dir: str | None = None  # endpoint replies; None: <out>/cache


class ServeConfig(_Section):
    """The HTTP endpoint (serve/app.py). Field names are also the args of `serve.app:build_app`."""

    model_path: str | None = None  # an exported round folder or any HF folder
    model_name: str | None = None  # the id clients pass as `model`; None: the folder's name
    host: str = "127.0.0.1"  # used by jobs/serve_model.py; `serve deploy` takes http_options instead
    # Where HTTP proxies run (jobs/serve_model.py; `serve deploy` takes it at its top level). HeadOnly when
    # several Ray nodes share one machine, whose proxies would all bind the same port.
    proxy_location: Literal["EveryNode", "HeadOnly"] = "EveryNode"
    port: int = 8000
    api_keys_env: str = "REASONER_API_KEYS"  # comma-separated keys
    api_keys_file: str | None = None  # a mounted secret file, one key per line
    max_images: int = 1
    max_image_bytes: int = 4 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_request_bytes: int = 8 * 1024 * 1024  # the whole JSON body (413 past it); a data URL is 4/3 of its image
    max_n: int = 16
    max_tokens_limit: int = 2048
    default_max_tokens: int = 256  # when a request gives no max_tokens
    allow_remote_images: bool = False
    max_model_len: int = 2048  # context limit: longer prompts get 400 context_length_exceeded
    kv_cache_gib: float = 1.0  # VLLM_CPU_KVCACHE_SPACE on CPU
    enforce_eager: bool = True
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    replica_cpus: float = 0.5  # small, so a rolling update's second replica fits on a 2-CPU node
    replica_gpus: float = 0.0  # GPUs Ray gives each replica (its CUDA_VISIBLE_DEVICES); 1 on GPU nodes
    max_ongoing_requests: int = 64
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: int = 32

    @model_validator(mode="after")
    def _body_fits_images(self) -> "ServeConfig":
        needed = self.max_images * -(-self.max_image_bytes * 4 // 3)  # the images as base64 data URLs
        if self.max_request_bytes < needed:
            raise ValueError(f"serve.max_request_bytes ({self.max_request_bytes}) is below serve.max_images x the "
                             f"base64 size of serve.max_image_bytes ({needed}): images within the limits would be refused")
        return self


class Config(_Section):
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    distill: DistillConfig = DistillConfig()
    train: TrainConfig = TrainConfig()
    sft: SFTConfig = SFTConfig()
    rollout: RolloutConfig = RolloutConfig()
    pairs: PairConfig = PairConfig()
    dpo: DPOConfig = DPOConfig()
    eval: EvalConfig = EvalConfig()
    verifier: VerifierConfig = VerifierConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    serve: ServeConfig = ServeConfig()
    rounds: int = 2

    @model_validator(mode="after")
    def _one_compute_dtype(self) -> "Config":
        # The reference pass, the rollout engines and the policy must compute in one dtype (z = 0 on equal
        # weights); on GPUs the policy trains under DeepSpeed in bf16 (auto, bfloat16) or fp32, never fp16.
        if self.train.use_gpu and self.model.dtype == "float16":
            raise ValueError("model.dtype float16 with train.use_gpu: DeepSpeed trains in bf16 or fp32 here; "
                             "use auto (bf16 on GPU), bfloat16 or float32")
        return self


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: '{key}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=3` -> ("a.b", 3). The value is parsed as YAML so numbers, booleans, lists and null work."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        return key, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)})") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(err, 'problem', None) or err}{where}"


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{key}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def build_config(tree: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    tree = dict(tree or {})
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    tree: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"config file {path}: {'is a folder' if Path(path).is_dir() else 'does not exist'}")
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(err)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        tree = loaded or {}
    return build_config(tree, overrides)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
