"""Device-level numerics a run fixes for both sides alike.

On CUDA, PyTorch runs float32 convolutions through cuDNN with TF32 allowed by default (10-bit
mantissa). Measured on an H200 (flux-tiny, fp32): with TF32 on, the two libraries' VAE decoders,
given bit-identical latents, differed by 2.7e-3 in the frames (each picks its own cuDNN algorithm);
with TF32 off, the whole run passed at fp32 tolerance. An fp32 parity run means fp32 arithmetic, so
TF32 is switched off for both sides and the report says so; bf16 runs are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def fixed(device: str, dtype: str) -> Iterator[dict[str, str]]:
    """Within the block: TF32 off on CUDA for float32 runs. Yields what was set, for the report."""
    if device != "cuda" or dtype != "float32":
        yield {}
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield {"tf32": "off for both sides (cuDNN convolutions and matmuls): an fp32 run compares fp32 arithmetic"}
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
