"""Build tiny Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-1.5, LLaVA-NeXT, Gemma 3, Idefics3 and InternVL models
deterministically from a seed, as HF folders that vLLM also loads.

No hub is reachable, so the quickstart and the tests use models built here: random weights, a locally trained
tokenizer (reasoner_ray.models.tokenizer) and the family's real processor class. A folder is keyed by a hash
of the family, the size settings and the seed, built once and reused (`ensure_tiny_model`). Building writes to
a temporary sibling and renames it into place, so a crash never leaves a half-written model behind.

LLaVA, LLaVA-NeXT and Gemma 3: transformers 5.19 saves the CLIP/SigLIP tower as `vision_tower.*`, vLLM 0.32
loads `vision_tower.vision_model.*`; `reasoner_ray.models.export.write_vllm_layout` rewrites the keys, and
transformers reads that layout back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from reasoner_ray.core.config import TinyModelConfig
from reasoner_ray.core.prompts import (
    ANSWER_MARKER,
    COT_INSTRUCTION,
    COT_INSTRUCTION_MC,
    DIRECT_INSTRUCTION,
    TEACHER_SYSTEM_PROMPT,
)

BUILD_VERSION = 4  # bump when the construction below changes, so cached folders are rebuilt


VISION_PARTS = ("visual.", "vision_tower.", "vision_model.")  # parameter-name parts of each family's vision tower


def tiny_model_key(family: str, size: TinyModelConfig, seed: int) -> str:
    """The cache folder's name: every input of the build, the tokenizer's corpus included (its sentences change
    with the prompts and the teacher's wordings, and a tokenizer trained on other text is another model)."""
    blob = json.dumps({"family": family, "size": size.model_dump(), "seed": seed, "v": BUILD_VERSION,
                       "corpus": _corpus_digest()}, sort_keys=True)
    return f"tiny-{family}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


@functools.cache
def _corpus_digest() -> str:
    return hashlib.sha256("\n".join(_tokenizer_corpus()).encode()).hexdigest()


def _tokenizer_corpus() -> list[str]:
    from reasoner_ray.core import arithmetic_tasks, digit_tasks
    from reasoner_ray.teacher.phrasing import corpus_sentences

    texts = [ANSWER_MARKER, COT_INSTRUCTION, COT_INSTRUCTION_MC, DIRECT_INSTRUCTION, TEACHER_SYSTEM_PROMPT]
    try:
        import easy_vqa

        questions, answers, _ = easy_vqa.get_train_questions()
        texts += questions[:20000] + sorted(set(answers))
    except ImportError:  # the tokenizer still works without the data set; it is only less compact
        pass
    texts += corpus_sentences() + digit_tasks.corpus_sentences() + arithmetic_tasks.corpus_sentences()
    texts += [f"{ANSWER_MARKER} {a}" for a in ("yes", "no", "A", "B", "C", "D", "1", "2", "10")]
    return texts


def _text_config(size: TinyModelConfig, tokenizer, **family_keys) -> dict:
    """The language model's settings, the same for every family; `family_keys` add the family's own."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=size.text_hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_kv_heads,
        max_position_embeddings=size.max_position_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **family_keys,
    )


def _qwen_vl(size: TinyModelConfig, tokenizer, config_cls, model_cls, processor_cls, vision: dict,
             video_processor_cls=None, rope: dict | None = None, text: dict | None = None):
    """The Qwen VL families: M-RoPE text models with the same image tokens and image processor; their own towers
    (and, for Qwen3-VL, its own text model and video processor)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    head_dim = size.text_hidden_size // size.text_heads
    # M-RoPE splits the rotary half-dimension into (temporal, height, width) sections.
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    rope_parameters = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section, **(rope or {})}
    config = config_cls(
        text_config=_text_config(size, tokenizer, rope_parameters=rope_parameters, **(text or {})),
        vision_config=dict(depth=size.vision_depth, num_heads=size.vision_heads, patch_size=size.patch_size,
                           spatial_merge_size=2, temporal_patch_size=2, **vision),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    model = model_cls(config)
    pixels = size.image_size * size.image_size
    image_kwargs = dict(patch_size=size.patch_size, merge_size=2, temporal_patch_size=2,
                        size={"shortest_edge": pixels, "longest_edge": pixels})
    processor = processor_cls(
        image_processor=Qwen2VLImageProcessor(**image_kwargs),
        video_processor=(video_processor_cls or Qwen2VLVideoProcessor)(**image_kwargs),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    return model, processor


def _qwen2_vl(size: TinyModelConfig, tokenizer):
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
    )

    vision = dict(embed_dim=size.vision_hidden_size, hidden_size=size.text_hidden_size)
    return _qwen_vl(size, tokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, vision)


def _qwen2_5_vl(size: TinyModelConfig, tokenizer):
    """Qwen2.5-VL: a SwiGLU tower with window attention (full attention in its last block) and RMSNorm."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )

    vision = dict(hidden_size=size.vision_hidden_size, intermediate_size=2 * size.vision_hidden_size,
                  out_hidden_size=size.text_hidden_size, window_size=4 * size.patch_size,
                  fullatt_block_indexes=[size.vision_depth - 1])
    return _qwen_vl(size, tokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, vision)


def _qwen3_vl(size: TinyModelConfig, tokenizer):
    """Qwen3-VL: a Qwen3 text model (RMSNorm on queries and keys, interleaved M-RoPE) and a tower with learned
    position embeddings whose intermediate layers also feed the text model's first layers (DeepStack)."""
    from transformers import (
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    grid = size.image_size // size.patch_size
    vision = dict(hidden_size=size.vision_hidden_size, intermediate_size=2 * size.vision_hidden_size,
                  out_hidden_size=size.text_hidden_size, num_position_embeddings=grid * grid,
                  deepstack_visual_indexes=[0])
    return _qwen_vl(size, tokenizer, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, vision,
                    video_processor_cls=Qwen3VLVideoProcessor, rope={"mrope_interleaved": True},
                    text={"head_dim": size.text_hidden_size // size.text_heads})


def _clip_vision(size: TinyModelConfig) -> dict:
    return dict(model_type="clip_vision_model", hidden_size=size.vision_hidden_size,
                intermediate_size=size.vision_hidden_size * 4, num_hidden_layers=size.vision_depth,
                num_attention_heads=size.vision_heads, image_size=size.image_size, patch_size=size.patch_size,
                projection_dim=size.vision_hidden_size)


def _llava_common(size: TinyModelConfig, tokenizer) -> dict:
    return dict(vision_config=_clip_vision(size), text_config=_text_config(size, tokenizer, model_type="llama"),
                image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
                vision_feature_layer=-1, tie_word_embeddings=False)


def _llava_processor_common(size: TinyModelConfig, tokenizer) -> dict:
    return dict(tokenizer=tokenizer, patch_size=size.patch_size, vision_feature_select_strategy="default",
                num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
                chat_template=tokenizer.chat_template)


def _llava(size: TinyModelConfig, tokenizer):
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    model = LlavaForConditionalGeneration(LlavaConfig(**_llava_common(size, tokenizer)))
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": size.image_size},
            crop_size={"height": size.image_size, "width": size.image_size},
        ),
        **_llava_processor_common(size, tokenizer),
    )
    return model, processor


def _llava_next(size: TinyModelConfig, tokenizer):
    """The paper's family: any-resolution tiling (a base view plus the tiles of the best-fitting grid), the
    processor's `image_sizes`, and a learned newline embedding after each row of tile features."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    s = size.image_size
    pinpoints = [[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]]  # grids of 1x1 .. 2x2 tiles of the tower's size
    model = LlavaNextForConditionalGeneration(LlavaNextConfig(**_llava_common(size, tokenizer),
                                                              image_grid_pinpoints=pinpoints))
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s},
                                                image_grid_pinpoints=pinpoints),
        **_llava_processor_common(size, tokenizer),
    )
    return model, processor


def _gemma3(size: TinyModelConfig, tokenizer):
    """Gemma 3: a SigLIP tower pooled to `mm_tokens_per_image` soft tokens between begin/end-of-image tokens, a
    Gemma 3 text model (alternating sliding-window and full attention layers, scaled embeddings), and
    `token_type_ids` that let image tokens attend to each other both ways."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    head_dim = size.text_hidden_size // size.text_heads
    layer_types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(size.text_layers)]
    rope = {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}}
    tokens_per_image = (size.image_size // size.patch_size // 2) ** 2  # the tower's patches, average-pooled 2x2
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<start_of_image>", "<end_of_image>", "<image_soft_token>")}
    config = Gemma3Config(
        text_config=_text_config(size, tokenizer, model_type="gemma3_text", head_dim=head_dim,
                                 query_pre_attn_scalar=head_dim, sliding_window=64, layer_types=layer_types,
                                 rope_parameters=rope),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=size.vision_hidden_size,
                           intermediate_size=4 * size.vision_hidden_size, num_hidden_layers=size.vision_depth,
                           num_attention_heads=size.vision_heads, image_size=size.image_size,
                           patch_size=size.patch_size, vision_use_head=False),  # Gemma 3 pools without it
        mm_tokens_per_image=tokens_per_image, boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"], tie_word_embeddings=False,
    )
    model = Gemma3ForConditionalGeneration(config)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": size.image_size, "width": size.image_size},
                                             do_pan_and_scan=False),
        tokenizer=tokenizer, chat_template=tokenizer.chat_template, image_seq_length=tokens_per_image,
    )
    return model, processor


def _idefics3(size: TinyModelConfig, tokenizer):
    """Idefics3 (SmolVLM's architecture): a SigLIP tower on a global view plus tiles of an image split at
    `max_image_size` (each framed by special tokens and named by row and column), pixel-shuffled by
    `scale_factor` into a connector, `pixel_attention_mask` for padded tiles, a Llama text model."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    scale = 2
    tokens_per_tile = (size.image_size // size.patch_size) ** 2 // (scale * scale)
    config = Idefics3Config(
        text_config=_text_config(size, tokenizer, model_type="llama"),
        vision_config=dict(hidden_size=size.vision_hidden_size, intermediate_size=4 * size.vision_hidden_size,
                           num_hidden_layers=size.vision_depth, num_attention_heads=size.vision_heads,
                           image_size=size.image_size, patch_size=size.patch_size),
        scale_factor=scale, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = Idefics3ForConditionalGeneration(config)
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(size={"longest_edge": 2 * size.image_size}, do_image_splitting=True,
                                               max_image_size={"longest_edge": size.image_size}),
        tokenizer=tokenizer, chat_template=tokenizer.chat_template, image_seq_len=tokens_per_tile,
    )
    return model, processor


def _internvl(size: TinyModelConfig, tokenizer):
    """InternVL (transformers format, InternVL3): an InternViT tower (layer scale, mean pooling) pixel-shuffled by
    `downsample_ratio` into an MLP projector, a Qwen2 text model; the image's tiles are flattened into one
    `pixel_values` for the whole batch."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokens_per_image = (size.image_size // size.patch_size) ** 2 // 4  # downsample_ratio 0.5 on each side
    config = InternVLConfig(
        text_config=_text_config(size, tokenizer, model_type="qwen2"),
        vision_config=dict(hidden_size=size.vision_hidden_size, intermediate_size=4 * size.vision_hidden_size,
                           num_hidden_layers=size.vision_depth, num_attention_heads=size.vision_heads,
                           image_size=[size.image_size] * 2, patch_size=[size.patch_size] * 2),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=tokens_per_image,
        downsample_ratio=0.5, tie_word_embeddings=False,
    )
    model = InternVLForConditionalGeneration(config)
    image_size = {"height": size.image_size, "width": size.image_size}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=image_size),  # wide images become tiles plus a thumbnail
        video_processor=InternVLVideoProcessor(size=image_size),
        tokenizer=tokenizer, chat_template=tokenizer.chat_template, image_seq_length=tokens_per_image,
    )
    return model, processor


FAMILIES = {"qwen2_vl": _qwen2_vl, "qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl, "llava": _llava,
            "llava_next": _llava_next, "gemma3": _gemma3, "idefics3": _idefics3,
            "internvl": _internvl}


def build_tiny_model(family: str, size: TinyModelConfig, seed: int, out_dir: str | Path) -> Path:
    """Build and save a tiny VLM (model + processor + tokenizer) into out_dir."""
    import torch
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    from reasoner_ray.models.export import write_vllm_layout
    from reasoner_ray.models.tokenizer import train_tokenizer

    if family not in FAMILIES:
        raise ValueError(f"model.family {family!r} is not one of {sorted(FAMILIES)}")
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(_tokenizer_corpus(), size.vocab_size, family, size.split_digits)
    model, processor = FAMILIES[family](size, tokenizer)
    if size.vision_init_scale != 1.0:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.dim() > 1 and any(part in name for part in VISION_PARTS):
                    param.mul_(size.vision_init_scale)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    out = Path(out_dir)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" for one small shard says nothing
    try:
        model.save_pretrained(out)
        processor.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    write_vllm_layout(out)
    return out


def ensure_tiny_model(family: str, size: TinyModelConfig, seed: int, cache_dir: str | Path) -> Path:
    """The cached folder for these settings, built atomically on first use (safe under concurrent callers)."""
    cache = Path(cache_dir)
    final = cache / tiny_model_key(family, size, seed)
    if (final / "config.json").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=cache))
    try:
        build_tiny_model(family, size, seed, tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race; its folder is equivalent
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
