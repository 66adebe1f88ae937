"""``attribution=attention_norm``, ``globenc`` and ``alti``: context mixing from the norms of the mixed vectors.

Notation of DESIGN.md "Context-mixing methods", one layer, one segment of n tokens:
``z^h_ij = A^h_ij f_h(x_j)`` (H, n, n, d), ``z_ij = sum_h z^h_ij + [i = j] x_i`` (n, n, d), ``g_1``, ``g_2``
the LayerNorms' linear parts at the actual pass (identity / left out for a pre-norm family).
The terms are built for a block of query rows at a time (:func:`row_blocks` bounds the memory).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.attribution.mixing import ContextMixing
from bertstory.attribution.vectors import LayerVectors, Norm

BLOCK_ELEMENTS = 1 << 23  # values of the per-head terms z^h_ij of one block of query rows


def row_blocks(H: int, n: int, d: int, budget: int = BLOCK_ELEMENTS) -> list[slice]:
    """Blocks of query rows whose per-head terms (H, m, n, d) hold at most ``budget`` values (at least one row)."""
    m = max(1, budget // (H * n * d))
    return [slice(a, min(n, a + m)) for a in range(0, n, m)]


def terms(vec: LayerVectors, rows: slice) -> tuple[Tensor, Tensor]:
    """``z^h_ij`` (H, m, n, d) and ``z_ij`` (m, n, d) for the query rows ``i`` in ``rows``."""
    zh = vec.A[:, rows, :, None] * vec.f[:, None, :, :]
    z = zh.sum(0)
    i = torch.arange(rows.start, rows.stop, device=z.device)
    z[i - rows.start, i] += vec.x[i]
    return zh, z


def apply_norm(norm: Norm | None, z: Tensor, rows: slice, query_axis: int) -> Tensor:
    """``g(z) = gamma * (z - mean(z)) / s(i)`` for terms z whose axis ``query_axis`` runs over ``rows``;
    the identity for ``norm=None`` (pre-norm)."""
    if norm is None:
        return z
    shape = [1] * z.dim()
    shape[query_axis] = -1
    return norm.centre(z) * norm.inv_s[rows].view(shape)


def g1(vec: LayerVectors, z: Tensor, rows: slice, query_axis: int) -> Tensor:
    """``g_1(z)``: the first LayerNorm's linear part."""
    return apply_norm(vec.ln1, z, rows, query_axis)


def g21(vec: LayerVectors, z: Tensor, rows: slice, query_axis: int) -> Tensor:
    """``g_2(g_1(z))`` (pre-norm: ``g_2`` left out, ``g_1`` the identity)."""
    return apply_norm(vec.ln2, g1(vec, z, rows, query_axis), rows, query_axis)


class NormMixing(ContextMixing):
    """A method whose ``C`` and ``M`` come from the terms of a block of query rows (:meth:`block`)."""

    def block(self, vec: LayerVectors, zh: Tensor, z: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
        """``C`` (H, m, n) and ``M`` (m, n) for the query rows ``rows``."""
        raise NotImplementedError

    def layer_matrices(self, vec):
        H, n, d = vec.f.shape
        Cs, Ms = [], []
        for rows in row_blocks(H, n, d):
            C, M = self.block(vec, *terms(vec, rows), rows)
            Cs.append(C)
            Ms.append(M)
        return torch.cat(Cs, 1), torch.cat(Ms, 0)


class AttentionNorm(NormMixing):
    """Kobayashi et al. 2020/2021: ``C^h_ij = ||z^h_ij||``, ``M_ij = ||g_1(z_ij)||`` ("AttnResLn-N")."""

    NAME = "attention_norm"

    def block(self, vec, zh, z, rows):
        return zh.norm(dim=-1), g1(vec, z, rows, 0).norm(dim=-1)


class GlobEnc(NormMixing):
    """Modarressi et al. 2022: ``C^h_ij = ||g_2(g_1(z^h_ij))||``, ``M_ij = ||g_2(g_1(z_ij))||`` ("N_ENC", the
    feed-forward block left out), ``M`` composed unnormalised."""

    NAME = "globenc"
    normalise_layers = False

    def block(self, vec, zh, z, rows):
        return g21(vec, zh, rows, 1).norm(dim=-1), g21(vec, z, rows, 0).norm(dim=-1)


def alti_scores(y: Tensor, t: Tensor) -> Tensor:
    """``max(0, ||y_i||_1 - ||y_i - t_ij||_1)``: (..., m, n) from y (..., m, d) and terms t (..., m, n, d)."""
    return (y.abs().sum(-1)[..., None] - (y[..., None, :] - t).abs().sum(-1)).clamp_min(0)


class Alti(NormMixing):
    """Ferrando et al. 2022: ``C^h_ij = max(0, ||y^h_i||_1 - ||y^h_i - g_1(z^h_ij)||_1)`` with
    ``y^h_i = sum_k g_1(z^h_ik)``; ``M_ij`` the same with ``g_1(z_ij)`` and the real LayerNorm output ``y_i``."""

    NAME = "alti"

    def block(self, vec, zh, z, rows):
        gzh = g1(vec, zh, rows, 1)
        return alti_scores(gzh.sum(2), gzh), alti_scores(vec.y[rows], g1(vec, z, rows, 0))
