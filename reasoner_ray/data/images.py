"""Image references -> bytes / PIL images / data URLs, with validation that names what is wrong.

`decode_image` is the project's one image decoder: the data readers, training and the Serve endpoint all go
through it, so an image is refused for the same reasons everywhere (serve/validation.py maps them to 400s).
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
from pathlib import Path

from PIL import Image

from reasoner_ray.core.rows import ImageRef


class ImageError(ValueError):
    """An image that is missing or cannot be decoded. `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_image_field(value, image_root: str | None = None) -> ImageRef:
    """Accept what the formats put in an `image` field: a path, raw bytes, a data URL, an ImageRef dict, or a
    Hugging Face `datasets` Image() struct {bytes, path} (parquet copies of benchmarks, TRL files)."""
    if isinstance(value, ImageRef):
        return value
    if isinstance(value, dict) and "bytes" in value:
        return parse_image_field(value.get("bytes") or value.get("path"), image_root)
    if isinstance(value, dict):
        present = {k: v for k, v in value.items() if v is not None}
        return ImageRef(**present)
    if isinstance(value, (bytes, bytearray)):
        return ImageRef(data=bytes(value))
    if isinstance(value, str) and value:
        if value.startswith("data:"):
            return ImageRef(url=value)
        path = Path(value)
        if image_root and not path.is_absolute():
            path = Path(image_root) / path
        return ImageRef(path=str(path))
    raise ImageError("missing_image", f"no usable image in field value {type(value).__name__}")


def decode_data_url(url: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a base64 data URL, or ImageError: 'corrupt_image' (not a base64 data URL; `detail` starts
    with "bad base64" when the payload is not base64), 'image_too_large' past `max_bytes` (checked on the
    payload's length before it is decoded)."""
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise ImageError("corrupt_image", "data URL is not of the form data:<mime>;base64,<payload>")
    if max_bytes is not None and len(payload) * 3 // 4 > max_bytes + 2:  # refuse before decoding a huge payload
        raise ImageError("image_too_large", f"image is over the limit of {max_bytes} bytes")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ImageError("corrupt_image", f"bad base64 in data URL: {err}") from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise ImageError("image_too_large", f"image is {len(raw)} bytes, over the limit of {max_bytes}")
    return raw


def image_bytes(ref: ImageRef) -> bytes:
    if ref.data is not None:
        return ref.data
    if ref.url is not None:
        return decode_data_url(ref.url)
    path = Path(ref.path)  # type: ignore[arg-type]
    if not path.is_file():
        raise ImageError("missing_image", f"no file at {path}")
    return path.read_bytes()


IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # what images are decoded from: the formats VQA data and clients use


def decode_image(raw: bytes, max_pixels: int | None = None) -> Image.Image:
    """Encoded bytes -> an RGB PIL image, or ImageError: 'image_too_large' when the header declares more than
    `max_pixels` (checked before any pixel is decoded) or more than PIL's decompression-bomb bound (raised by
    `Image.open` itself, from a header of a few dozen bytes), 'corrupt_image' for anything PIL cannot decode or
    any format but IMAGE_FORMATS (PIL's other plugins, many of them rarely exercised, never see the bytes)."""
    try:
        image = Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS)  # reads the header only
    except Image.DecompressionBombError as err:
        raise ImageError("image_too_large", str(err)) from None
    except Exception as err:  # noqa: BLE001 - PIL's format plugins raise many types on malformed bytes
        raise ImageError("corrupt_image", f"cannot decode image ({err.__class__.__name__}: {err})") from None
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError("image_too_large", f"image is {width}x{height} pixels, over the limit of {max_pixels}")
    try:
        image.load()
        return image.convert("RGB")
    except Exception as err:  # noqa: BLE001 - truncated or corrupt pixel data, whatever the plugin raises
        raise ImageError("corrupt_image", f"cannot decode image ({err.__class__.__name__}: {err})") from None


def open_image(ref: ImageRef) -> Image.Image:
    """Decode to an RGB PIL image, or raise ImageError('missing_image' | 'corrupt_image' | 'image_too_large')."""
    return decode_image(image_bytes(ref))


def mime_type(raw: bytes, path: str | None = None) -> str:
    if raw.startswith(b"\x89PNG"):
        return "image/png"
    if raw[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    guess = mimetypes.guess_type(path or "")[0]
    return guess or "application/octet-stream"


def to_data_url(ref: ImageRef) -> str:
    """The image as a data URL of its original bytes (no re-encoding, so content hashes stay stable)."""
    if ref.url is not None:
        return ref.url
    raw = image_bytes(ref)
    return f"data:{mime_type(raw, ref.path)};base64,{base64.b64encode(raw).decode('ascii')}"
