"""Compact storage of a segment's maps inside the page: float16 or uint8, base64 text.

A map ``M`` (L,H,n,n) with values in [0, 1] is flattened in C order (layer, head, query i, key j)
and stored as little-endian bytes:

- ``float16``: IEEE half floats; decoding gives the float16 rounding of ``M`` (relative error <= 2^-11);
- ``uint8``: ``q = round(255 M)``, decoded as ``q / 255`` (absolute error <= 1/510).

:data:`MAX_ERROR` is the bound the browser test holds the page to.
"""

from __future__ import annotations

import base64

import numpy as np
import torch

MAX_ERROR = {"float16": 2.0**-12, "uint8": 1.0 / 510}  # absolute, for values in [0, 1]


def encode_map(values: torch.Tensor, dtype: str) -> str:
    """Base64 text of ``values`` (L,H,n,n) in ``dtype`` (``float16`` or ``uint8``)."""
    v = values.detach().to(torch.float32).cpu().numpy()
    if dtype == "float16":
        raw = v.astype("<f2").tobytes()
    elif dtype == "uint8":
        raw = np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes()
    else:
        raise ValueError(f"unknown dtype {dtype}")
    return base64.b64encode(raw).decode("ascii")


def decode_map(text: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 values the page decodes from :func:`encode_map`'s text (the reference of the JS decoder)."""
    raw = base64.b64decode(text)
    if dtype == "float16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(shape)
    return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / 255.0).reshape(shape)
