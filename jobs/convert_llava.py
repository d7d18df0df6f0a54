"""Convert a checkpoint in the original LLaVA training format (LLaVA-NeXT, `LlavaLlamaForCausalLM`; the paper's
released SFT and DPO models) into a transformers LLaVA-NeXT folder that this project, transformers and vLLM load.

    python jobs/convert_llava.py --src <original folder> --out <new folder> [--vision-tower <CLIP folder>] \
        [--chat-template <Jinja file>]

--vision-tower: the CLIP folder the checkpoint's `mm_vision_tower` names (e.g. a local copy of
openai/clip-vit-large-patch14-336), for its config and image statistics, and its weights when the checkpoint
holds none. --chat-template: the template to write when the tokenizer's own does not render an image as
`<image>` and is not Llama-3's (a Llama-3 tokenizer gets one that does). Then set `model.path` to the new folder
(`model.family: llava_next`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import run_guarded, setup_logging, summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser(description=summary(__doc__))
    parser.add_argument("--src", required=True, help="the checkpoint folder in the original LLaVA training format")
    parser.add_argument("--out", required=True, help="the new transformers LLaVA-NeXT folder to write")
    parser.add_argument("--vision-tower", default=None,
                        help="the CLIP folder the checkpoint's mm_vision_tower names (config, image statistics, weights)")
    parser.add_argument("--chat-template", default=None,
                        help="a Jinja chat template file that renders an image part as <image> (default: the tokenizer's "
                             "own when it does, else Llama-3 turns with <image>)")
    args = parser.parse_args(argv)
    return run_guarded(lambda: _convert(args))


def _convert(args) -> int:
    from reasoner_ray.core.errors import PreflightError
    from reasoner_ray.models.convert_llava import ConversionError, convert
    from reasoner_ray.pipeline.preflight import check_input_path

    check_input_path("--src", args.src)
    template = None
    if args.chat_template:
        check_input_path("--chat-template", args.chat_template)
        template = Path(args.chat_template).read_text()
    try:
        out = convert(args.src, args.out, args.vision_tower, template)
    except (ConversionError, FileNotFoundError) as err:
        raise PreflightError(str(err)) from err
    print(f"converted: {out} (model.family: llava_next)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
