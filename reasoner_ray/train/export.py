"""End of a run: a Hugging Face folder (weights + processor) that transformers and vLLM load directly.

Under ZeRO-3 the weights are partitioned across ranks: every rank takes part in gathering them
(`_zero3_consolidated_16bit_state_dict`, which keeps the training dtype), and rank 0 writes. A LoRA adapter is
merged into the base weights first, so the export is a plain model. The LLaVA key layout vLLM expects is
written by `reasoner_ray.models.export.write_vllm_layout`.
"""

from __future__ import annotations

from pathlib import Path


def gather_state_dict(engine, zero_stage: int):
    """The full state dict on rank 0 (None elsewhere under ZeRO-3); every rank must call this."""
    if zero_stage == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    return engine.module.state_dict()


def export_hf(engine, processor, out_dir: str | Path, zero_stage: int, rank: int) -> Path | None:
    module = engine.module
    if hasattr(module, "merge_and_unload"):  # peft LoRA (never under ZeRO-3: refused at config load)
        module = module.merge_and_unload()
        state = module.state_dict()
    else:
        state = gather_state_dict(engine, zero_stage)
    if rank != 0:
        return None
    from reasoner_ray.models.export import write_vllm_layout

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module.save_pretrained(out, state_dict=state, safe_serialization=True)
    processor.save_pretrained(out)
    write_vllm_layout(out)
    return out
