"""A vLLM engine that turns VQA rows into sampled chat completions (the one place that builds `vllm.LLM`).

Used by the rollout and evaluation stages (as a Ray Data actor class, one engine per actor) and by the
quickstart slice. Prompts are rendered as training renders them (models/chat.render_prompt: the processor's chat
template); images go to vLLM raw (PIL) so the model's processor does the same resizing in vLLM as in training.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoner_ray.core.prompts import Style, prompt_messages
from reasoner_ray.core.rows import VQARow, prompt_digest
from reasoner_ray.engines.vllm_env import apply_vllm_env
from reasoner_ray.models.chat import render_prompt

log = logging.getLogger(__name__)


def stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class EngineSettings:
    model_path: str
    max_model_len: int = 2048
    kv_cache_gib: float = 2.0
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    enforce_eager: bool = True
    seed: int = 0
    dtype: str = "auto"
    # CPU only: pin the engine to its own slot of this many cores (cpu_binding.py); 0 leaves vLLM's own binding
    cpu_cores: int = 0


@dataclass(frozen=True)
class Sample:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    token_ids: tuple[int, ...] = ()
    # Each sampled token's log-prob under the model (raw: before temperature / top-p), when asked for.
    token_logprobs: tuple[float, ...] | None = None
    prompt_digest: str = ""  # rows.prompt_digest of the prompt's token ids (image tokens included)


def sampled_logprobs(flat, token_ids) -> tuple[float, ...]:
    """Each sampled token's log-prob from vLLM's `FlatLogprobs` (asked for with `flat_logprobs`: a few flat lists per
    chain instead of a dict and a Logprob object per token, fewer objects to build and garbage-collect; sampling
    96 prompts x 8 chains x 64 tokens took 27.2 s vs 28.3 s with dicts, 25.1 s without log-probs, mean of 3).
    vLLM puts the sampled token first at every position."""
    firsts = flat.start_indices
    if [flat.token_ids[i] for i in firsts] != list(token_ids):
        raise RuntimeError("vLLM's log-probs do not line up with the sampled tokens")
    return tuple(flat.logprobs[i] for i in firsts)


class VLLMGenerator:
    """Owns one `vllm.LLM`. Call `close()` (or use as a context manager): a dropped engine leaks /dev/shm."""

    def __init__(self, settings: EngineSettings):
        apply_vllm_env(settings.kv_cache_gib)
        from reasoner_ray.engines.vllm_env import device_engine_args, has_cuda

        cuda = has_cuda()
        if not cuda:
            # The engine core in this process, not a child: no second process that imports vLLM again (engine
            # start 24 s -> 10 s measured here, same tokens/s) and none left behind when an actor is killed.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            if settings.cpu_cores > 0:
                from reasoner_ray.engines.cpu_binding import claim_cores, pin_engine
                from reasoner_ray.paths import project_dirs

                self._claim = claim_cores(settings.cpu_cores, Path(project_dirs()["tmp"]) / "cpu-slots")
                pin_engine(self._claim.cores)
                log.info("vLLM engine pinned to cores %s", self._claim.cores)
        from vllm import LLM

        from reasoner_ray.models.chat import load_processor
        from reasoner_ray.models.loading import resolve_dtype

        dtype = resolve_dtype(settings.dtype, cuda)
        self.settings = settings
        self.llm = LLM(
            model=settings.model_path,
            max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager,
            limit_mm_per_prompt={"image": 1},
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            seed=settings.seed,
            dtype=dtype,
            # Sampled tokens' log-probs are the model's own, before temperature and top-p: the DPO reference
            # log-probs (train/reference.py). Pinned: vLLM's default could move.
            logprobs_mode="raw_logprobs",
            **device_engine_args(cuda),
        )
        self.processor = load_processor(settings.model_path)

    def render(self, row: VQARow, style: Style) -> str:
        return render_prompt(self.processor, prompt_messages(row, style))

    def generate(
        self,
        rows: list[VQARow],
        style: Style,
        n: int,
        temperature: float,
        max_tokens: int,
        top_p: float = 1.0,
        seed: int | None = None,
        ignore_eos: bool = False,
        logprobs: bool = False,
    ) -> list[list[Sample]]:
        """n samples per row, in row order. temperature 0 is greedy. `logprobs`: also each sampled token's
        log-prob (the engine's `logprobs_mode` is pinned to raw: the model's own, unscaled by the sampling settings).

        With a seed, each row gets its own seed derived from (seed, row id): reproducible, yet different rows
        do not share one random stream (one seed for all would give every prompt the same draws).
        """
        from vllm import SamplingParams

        from reasoner_ray.data.images import open_image

        params = [
            SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, ignore_eos=ignore_eos,
                           logprobs=0 if logprobs else None, flat_logprobs=logprobs,
                           seed=None if seed is None else stable_seed(seed, row.id, temperature))
            for row in rows
        ]
        prompts: list[dict[str, Any]] = [
            {"prompt": self.render(row, style), "multi_modal_data": {"image": open_image(row.image)}} for row in rows
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            [
                Sample(
                    text=o.text,
                    finish_reason=o.finish_reason,
                    prompt_tokens=len(out.prompt_token_ids or ()),
                    completion_tokens=len(o.token_ids),
                    token_ids=tuple(o.token_ids),
                    token_logprobs=sampled_logprobs(o.logprobs, o.token_ids) if logprobs else None,
                    prompt_digest=prompt_digest(out.prompt_token_ids or ()) if logprobs else "",
                )
                for o in out.outputs
            ]
            for out in outputs
        ]

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as err:  # shutting down twice or after a crash must not mask the real error
                log.warning("vLLM engine shutdown: %s", err)
        claim = getattr(self, "_claim", None)
        if claim is not None:
            claim.release()

    def __enter__(self) -> "VLLMGenerator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
