"""The one interface every attribution method implements (Captum-style ``attribute``)."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def normalise_rows(s: Tensor) -> tuple[Tensor, int]:
    """``a_ij = s_ij / sum_k s_ik`` over the last axis, for raw scores ``s`` (..., n, n) >= 0.

    Rule for a row whose scores are all zero (the head output does not depend on any
    input token, e.g. an exactly dead head): it becomes uniform, ``a_ij = 1/n``, and is
    counted. Returns ``(a, zero_rows)``.
    """
    total = s.sum(-1, keepdim=True)
    zero = total == 0
    n = s.shape[-1]
    a = torch.where(zero, torch.full_like(s, 1.0 / n), s / torch.where(zero, torch.ones_like(total), total))
    return a, int(zero.sum())


class Attribution:
    """Base class: per-head attribution of head outputs to input tokens.

    Subclasses implement :meth:`attribute_segment`, which receives one segment without
    padding and returns raw scores ``s`` of shape (L, H, n, n), ``s_ij >= 0`` (query i,
    input token j). :meth:`attribute` handles batches: it strips each segment's padding,
    normalises rows and pads back with zeros.
    """

    name: str = "base"
    needs_grad: bool = False

    def __init__(
        self, wrt: str = "embeddings", head_output: str = "context", dtype: str = "float32", **options
    ):
        if wrt not in ("embeddings", "word"):
            raise ValueError(f"attribution.wrt must be 'embeddings' or 'word', not {wrt!r}")
        if head_output not in ("context", "projected"):
            raise ValueError(f"attribution.head_output must be 'context' or 'projected', not {head_output!r}")
        if dtype not in ("float32", "float64", "bfloat16", "float16"):
            raise ValueError(
                f"attribution.dtype must be float32, float64, bfloat16 or float16, not {dtype!r}"
            )
        self.wrt = wrt
        self.head_output = head_output
        self.dtype = dtype
        self.options = options
        self.zero_rows = 0

    def info(self) -> dict:
        """The ``method`` block of metrics.json."""
        return {
            "name": self.name,
            "wrt": self.wrt,
            "head_output": self.head_output,
            "dtype": self.dtype,
            **self.options,
            "zero_rows": self.zero_rows,
        }

    def attribute_segment(self, model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """Raw scores (L, H, n, n) for one segment: ``input_ids`` and ``token_type_ids`` of shape (1, n)."""
        raise NotImplementedError

    def attribute(
        self,
        model: torch.nn.Module,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Row-normalised attribution (B, L, H, n, n) float32; zero on padding rows and keys."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        B, n = input_ids.shape
        L = model.config.num_hidden_layers
        H = model.config.num_attention_heads
        out = torch.zeros(B, L, H, n, n, dtype=torch.float32, device=input_ids.device)
        lengths = attention_mask.sum(-1).tolist()
        for b, nb in enumerate(lengths):
            nb = int(nb)
            s = self.attribute_segment(model, input_ids[b : b + 1, :nb], token_type_ids[b : b + 1, :nb])
            a, zero = normalise_rows(s.float())
            self.zero_rows += zero
            out[b, :, :, :nb, :nb] = a
        return out
