"""A case's input image (image-to-image and image-to-video families), the same pixels for both sides.

`input_image` in a case is "skimage:<name>" (a photo scikit-image ships, e.g. "skimage:astronaut",
so no download is needed) or a path to an image file; `input_image_size` resizes it to a square of
that many pixels first. Diffusers takes a PIL image; SGLang takes a file path, so the same pixels are
written once as PNG.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from parity.errors import ParityError

SKIMAGE_PREFIX = "skimage:"


def load(spec: str, size: int | None = None, mode: str = "RGB") -> Any:
    """The input image as a PIL image in `mode` (RGB unless a family's pipeline reads e.g. RGBA)."""
    from PIL import Image

    if spec.startswith(SKIMAGE_PREFIX):
        import skimage.data

        name = spec.removeprefix(SKIMAGE_PREFIX)
        loader = getattr(skimage.data, name, None)
        if loader is None or not callable(loader):
            raise ParityError(f"input_image {spec!r}: scikit-image ships no photo called {name!r}")
        image = Image.fromarray(loader())
    else:
        try:
            image = Image.open(spec)
            image.load()
        except OSError as exc:
            raise ParityError(f"input_image {spec!r} cannot be read as an image: {exc}") from None
    image = image.convert("RGB")
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image.convert(mode)


def as_file(spec: str, size: int | None = None, mode: str = "RGB") -> Path:
    """The input image as a PNG file (for a library that takes a path), written once per process."""
    key = hashlib.sha256(f"{spec}|{size}|{mode}".encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"parity-input-{key}.png"
    if not path.is_file():
        tmp = path.with_suffix(".tmp.png")
        load(spec, size, mode).save(tmp)
        tmp.replace(path)
    return path
