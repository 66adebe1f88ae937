"""The one interface every attribution method implements (Captum-style ``attribute``).

A method is a pure function of the model and the batch: :meth:`Attribution.attribute` returns the
row-normalised maps and how many rows needed the zero-row rule (:class:`Attributions`), and keeps
no running state. Methods are built from ``conf/attribution/*.yaml`` by Hydra's ``_target_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bertstory.attribution.precision import resolve_dtype
from bertstory.errors import BertstoryError
from bertstory.models.families import family_of

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


@dataclass
class Attributions:
    """What :meth:`Attribution.attribute` returns for a batch.

    ``maps`` (B, L, H, n, n) float32, rows normalised, zero on padding rows and keys (None for
    ``attribution=none``); ``zero_rows`` the rows whose raw scores were all zero (made uniform).
    """

    maps: Tensor | None
    zero_rows: int = 0


class Attribution:
    """Base class: per-head attribution of head outputs to input tokens.

    Subclasses implement :meth:`scores`, which receives one segment without padding and returns
    raw scores ``s`` of shape (L, H, n, n), ``s_ij >= 0`` (query i, input token j), and
    :meth:`options`, their own entries of the ``method`` block. :meth:`attribute` handles
    batches: it strips each segment's padding, normalises rows and pads back with zeros.
    """

    NAME = "base"  # the method's name when the config gives none (``quick`` is named ``sketch``)
    produces_maps = True  # False only for ``none``: attention statistics alone

    def __init__(self, name: str | None = None, wrt: str = "embeddings", head_output: str = "context",
                 dtype: str = "auto"):
        if wrt not in ("embeddings", "word"):
            raise BertstoryError(f"attribution.wrt must be 'embeddings' or 'word', not {wrt!r}")
        if head_output not in ("context", "projected"):
            raise BertstoryError(f"attribution.head_output must be 'context' or 'projected', not {head_output!r}")
        if dtype != "auto" and dtype not in DTYPES:
            raise BertstoryError(f"attribution.dtype must be auto or one of {', '.join(DTYPES)}, not {dtype!r}")
        if name not in (None, self.NAME):
            raise BertstoryError(f"attribution.name={name} is not this config's method ({self.NAME}): choose a method "
                                 "with the config group, e.g. attribution=exact, not with attribution.name")
        self.name = name or self.NAME
        self.wrt = wrt
        self.head_output = head_output
        self.dtype = dtype  # as requested (may be "auto")
        self.resolved_dtype: str | None = None if dtype == "auto" else dtype

    def resolve_dtype(self, device: torch.device | str, model_dtype: torch.dtype = torch.float32) -> str:
        """Fix ``dtype=auto`` for the device the run uses (once: later calls keep the first choice)."""
        if self.resolved_dtype is None:
            self.resolved_dtype = resolve_dtype(self.dtype, device, model_dtype)
        return self.resolved_dtype

    def tangent_dtype(self, model: torch.nn.Module) -> torch.dtype:
        """The torch dtype of the tangents for ``model`` (resolving ``auto`` on its device the first time)."""
        p = next(model.parameters())
        return DTYPES[self.resolve_dtype(p.device, p.dtype)]

    def options(self) -> dict[str, Any]:
        """The method's own options, as they appear in the ``method`` block of metrics.json."""
        return {}

    def info(self) -> dict[str, Any]:
        """The ``method`` block of metrics.json (the run adds ``zero_rows``): ``dtype`` is the dtype that
        ran (``auto`` resolved), ``dtype_requested`` the configured one."""
        return {"name": self.name, "wrt": self.wrt, "head_output": self.head_output,
                "dtype": self.resolved_dtype or self.dtype, "dtype_requested": self.dtype, **self.options()}

    def scores(self, model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """Raw scores (L, H, n, n) for one segment: ``input_ids`` and ``token_type_ids`` of shape (1, n)."""
        raise NotImplementedError

    def attribute(self, model: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor,
                  token_type_ids: Tensor | None = None) -> Attributions:
        """Row-normalised attribution of a right-padded batch (B, n): maps (B, L, H, n, n) and zero-row count."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        B, n = input_ids.shape
        fam = family_of(model)
        L, H = fam.L, fam.H
        out = torch.zeros(B, L, H, n, n, dtype=torch.float32, device=input_ids.device)
        zero_rows = 0
        for b, nb in enumerate(attention_mask.sum(-1).tolist()):
            nb = int(nb)
            s = self.scores(model, input_ids[b : b + 1, :nb], token_type_ids[b : b + 1, :nb])
            a, zero = normalise_rows(s.float())
            zero_rows += zero
            out[b, :, :, :nb, :nb] = a
        return Attributions(out, zero_rows)
