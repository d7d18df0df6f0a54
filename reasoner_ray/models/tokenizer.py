"""A byte-level BPE tokenizer trained locally in seconds, with ChatML and vision special tokens.

No tokenizer can be downloaded here, so the tiny models get one trained on the project's own prompts, the
easy-VQA questions and answers, and rationale phrasings. The chat template is the Qwen2-VL one in spirit:
ChatML turns, images rendered as `<|vision_start|><|image_pad|><|vision_end|>` (the processor expands the pad
to the right number of image tokens).
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<image>",  # LLaVA's image placeholder
]
# A family's own image tokens, added only to its tokenizer (so the other families' vocabularies stay as they were).
FAMILY_SPECIAL_TOKENS = {
    "gemma3": {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    "internvl": {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                 "video_token": "<video>"},
}
# Literal tokens a family's vLLM processor looks up by text: Gemma's vocabulary has runs of newlines as single
# tokens, and vLLM merges the newlines around an image into them.
FAMILY_ADDED_TOKENS = {
    "gemma3": ["\n", "\n\n", "\n\n\n", "\n\n\n\n"],
    # Idefics3's processor frames each image with these and names each tile by its row and column.
    "idefics3": ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
                + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
}

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}{{ IMAGE_SLOT }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

IMAGE_SLOTS = {
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen3_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "llava": "<image>\n",
    "llava_next": "<image>\n",
    "gemma3": "<start_of_image>",  # the processor expands it into begin, image tokens, end
    "idefics3": "<image>",  # the processor expands it into the framed global image and tiles
    "internvl": "<IMG_CONTEXT>\n",  # the processor expands it into <img>, one token per feature, </img>
}

# The token the processor expands into one token per image feature.
IMAGE_TOKENS = {"qwen2_vl": "<|image_pad|>", "qwen2_5_vl": "<|image_pad|>", "qwen3_vl": "<|image_pad|>",
                "llava": "<image>", "llava_next": "<image>", "gemma3": "<image_soft_token>", "idefics3": "<image>",
                "internvl": "<IMG_CONTEXT>"}


def chat_template(family: str) -> str:
    return CHAT_TEMPLATE.replace("{{ IMAGE_SLOT }}", IMAGE_SLOTS[family])


def train_tokenizer(corpus: Iterable[str], vocab_size: int, family: str, split_digits: bool = False):
    """A PreTrainedTokenizerFast with pad = <|endoftext|>, eos = <|im_end|> and the family's chat template;
    with `split_digits`, every digit is a token of its own."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    family_tokens = FAMILY_SPECIAL_TOKENS.get(family, {"image_token": IMAGE_TOKENS[family]})
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + [t for t in family_tokens.values() if t not in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=family_tokens,
    )
    if family in FAMILY_ADDED_TOKENS:
        from tokenizers import AddedToken

        fast.add_tokens([AddedToken(t, normalized=False, special=False) for t in FAMILY_ADDED_TOKENS[family]])
    fast.chat_template = chat_template(family)
    return fast
