"""Which config keys decide each stage's result, so a changed config names the completed stages it makes stale.

Only keys that change what a stage produces are listed; keys that change how fast or where it runs (workers,
batch sizes of inference, concurrency, timeouts, cache folders) are not. A stage's result also depends on the
stages before it: redoing a stage redoes everything after it. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from reasoner_ray.core.config import round_entry
from reasoner_ray.core.rundir import round_of

_TRAINING = ("train.max_length", "train.freeze_vision", "train.freeze_projector", "train.lora_rank", "train.lora_alpha",
             "train.warmup_ratio", "train.weight_decay", "train.max_grad_norm", "run.seed")

# Stage kind -> dotted config keys or sections (a section stands for every key under it).
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "distill": ("data.train", "data.rationale_fraction", "teacher.model", "teacher.include_answer", "teacher.temperature", "teacher.max_tokens",
                "teacher.seed"),
    "sft": ("model.family", "model.path", "model.tiny", "model.dtype", "sft", "data.rationale_fraction", "data.short_answers_in_sft",
            *_TRAINING),
    "eval": ("data.eval", "eval.max_tokens", "eval.styles"),
    "rollouts": ("data.train", "data.rationale_fraction", "rollout.samples_per_temperature", "rollout.temperatures", "rollout.max_tokens",
                 "rollout.top_p", "rollout.limit", "run.seed"),
    "rewards": (),
    "pairs": ("pairs",),
    # reuse_sampled_logps decides where a completion ends (the sampled end-of-turn, or TRL's whole turn)
    "reference": ("dpo.reference", "dpo.reuse_sampled_logps", "train.max_length"),
    "dpo": ("dpo.loss", "dpo.beta", "dpo.label_smoothing", "dpo.nll_weight", "dpo.dpop_lambda", "dpo.lr",
            "dpo.global_batch_size", "dpo.epochs", "dpo.freeze_vision", "dpo.freeze_projector",
            "dpo.reuse_sampled_logps", "dpo.replay_rounds", *_TRAINING),
    "verifier": ("verifier", "pairs.prefer_shared_prefix", "pairs.cut_after_parting", "pairs.consistent_chosen",
                 "pairs.sound_chosen", "train.max_length", *_TRAINING),
    "verify": ("data.eval", "data.validation", "eval.samples", "eval.sample_temperature", "eval.max_tokens",
               "dpo.beta", "verifier.beta", "train.max_length"),
    "diagnose": ("data.validation", "eval.samples", "eval.sample_temperature", "eval.max_tokens", "pairs.accuracy_band"),
}


# Keys that may hold one value per round (a list, the last entry repeating): a round's stage records its own
# entry, so changing round 3's leaves rounds 1 and 2 as they are.
_PER_ROUND = ("dpo.epochs",)


def stage_kind(stage: str) -> str:
    """`r2/dpo` -> `dpo`, `r0/eval` -> `eval`, `sft` -> `sft`."""
    return stage.partition("/")[2] or stage


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _flatten(f"{prefix}.{key}", child, out)
    else:
        out[prefix] = value


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for key in dotted.split("."):
        node = node[key]
    return node


def stage_inputs(config_tree: dict[str, Any], stage: str) -> dict[str, Any]:
    """The values (JSON-able, from `Config.model_dump(mode="json")`) of the keys `stage` depends on, flattened."""
    out: dict[str, Any] = {}
    for dotted in STAGE_INPUTS.get(stage_kind(stage), ()):
        _flatten(dotted, _lookup(config_tree, dotted), out)
    round_index = round_of(stage)
    if round_index is not None:
        for key in _PER_ROUND:
            if key in out:
                out[key] = round_entry(out[key], round_index)
    return out


ABSENT = "<not recorded>"


def changed_inputs(recorded: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, recorded value, current value) for each key whose value differs. A key on one side only (a stage
    completed by a version of the project that did not record it, or one that no longer does) counts as changed,
    shown as ABSENT: nothing says the result would be the same."""
    return [(key, recorded.get(key, ABSENT), current.get(key, ABSENT)) for key in sorted(set(recorded) | set(current))
            if recorded.get(key, ABSENT) != current.get(key, ABSENT)]
