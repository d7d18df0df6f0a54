"""The vLLM async engine behind the endpoint: one `AsyncLLM` per Serve replica (the only place it is built).

Prompts are rendered as training renders them (models/chat.render_prompt: the processor's chat template; image
parts become its image placeholder) and the decoded PIL images go to vLLM raw, so vLLM's processor does the same
resizing as in training and evaluation.
`generate` yields vLLM `RequestOutput`s (deltas when streaming, one final output otherwise). vLLM is imported
lazily, after `apply_vllm_env`, so importing this module costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from reasoner_ray.core.config import ServeConfig
from reasoner_ray.engines.vllm_env import apply_vllm_env
from reasoner_ray.models.chat import render_prompt
from serve.errors import ApiError, invalid
from serve.schemas import ChatCompletionRequest
from serve.validation import PreparedChat

log = logging.getLogger(__name__)


class ChatEngine:
    def __init__(self, config: ServeConfig):
        apply_vllm_env(config.kv_cache_gib)
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from reasoner_ray.engines.vllm_env import device_engine_args, has_cuda
        from reasoner_ray.models.chat import load_processor
        from reasoner_ray.models.loading import resolve_dtype

        cuda = has_cuda()
        dtype = resolve_dtype(config.dtype, cuda)
        args = AsyncEngineArgs(
            model=config.model_path,
            served_model_name=config.model_name or None,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager,
            dtype=dtype,
            limit_mm_per_prompt={"image": config.max_images},
            enable_log_requests=False,  # request logs would carry prompts; keep them out of replica logs
            **device_engine_args(cuda),
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.processor = load_processor(config.model_path)
        self.max_model_len = config.max_model_len

    def render(self, messages: list[dict[str, Any]]) -> str:
        return render_prompt(self.processor, messages)

    async def generate(self, prepared: PreparedChat, request: ChatCompletionRequest, request_id: str,
                       stream: bool) -> AsyncIterator[Any]:
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=prepared.max_tokens,
            stop=request.stop_list() or None,
            seed=request.seed,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
        )
        prompt: dict[str, Any] = {"prompt": self.render(prepared.messages)}
        if prepared.images:
            prompt["multi_modal_data"] = {"image": prepared.images if len(prepared.images) > 1 else prepared.images[0]}
        try:
            async for output in self.engine.generate(prompt, params, request_id):
                yield output
        except VLLMClientError as err:
            raise _client_error(err, self.max_model_len) from None
        except ValueError as err:  # older vLLM paths still raise plain ValueError for prompt problems
            raise _client_error(err, self.max_model_len) from None

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            try:
                engine.shutdown()
            except Exception as err:  # a second shutdown after a crash must not hide the first error
                log.warning("vLLM engine shutdown: %s", err)


def _client_error(err: Exception, max_model_len: int) -> ApiError:
    """The engine's refusal in this server's words: vLLM's own text speaks to the operator (engine arguments,
    internals) and is logged here, never returned."""
    message = str(err)
    log.warning("the engine refused a request: %s", message)
    # vLLM words this two ways (renderer: "maximum context length", input processor: "maximum model length")
    if getattr(err, "parameter", None) == "input_tokens" or "maximum context length" in message \
            or "maximum model length" in message:
        return invalid(f"the prompt (text and image tokens) is longer than this server's context of {max_model_len} "
                       "tokens", "messages", "context_length_exceeded")
    return invalid("the request was refused by the model engine; check its parameters")
