"""Forward-mode propagation of many input tangents through a BERT-layout encoder at once.

This is the engine behind ``exact``, ``grad_x_input`` and ``sketch``. For one segment
(n tokens, no padding) it takes T input tangents, each non-zero in a single token row
(``dx_t = e_{j_t} v_t^T`` with ``v_t`` in R^d), and returns for every layer and head the
accumulated squared tangent norms

    S2[l, h, i, j] = sum_{t : j_t = j} w_t ||d o^{l,h}_i [dx_t]||^2          (L, H, n, n)

where ``d o[dx]`` is the Jacobian-vector product of the head output ``o^{l,h}_i`` with the
tangent. With ``v_t = e_c`` for every coordinate c and ``w_t = 1`` this is the squared
Frobenius norm of the Jacobian block ``d o_i / d x_j`` (DESIGN.md ``exact``).

It is ``torch.func.jvp`` under ``vmap`` written out by hand (the *linearised* forward):
the primal pass runs once through the Hugging Face modules and stores what the tangent
rules need (q, k, v, A, LayerNorm statistics, the activation's derivative); the tangents
then go through the linear maps as large matmuls (T*n rows), and the element-wise rules
(softmax, GELU, LayerNorm) cost a few multiply-adds each because their primal parts are
precomputed. Two savings over a generic ``jvp``: the first layer exploits the one-row
structure of the input tangents (Q, K, V of a tangent are one row, ``v_t W^T``), and the
last layer stops at the head outputs (no output projection or feed-forward).
``tests/test_attribution.py`` checks it against ``torch.func.jvp`` and brute-force Jacobians.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bertstory.models import extended_mask


@dataclass
class LayerState:
    """Primal quantities of one layer that the tangent rules need (one segment, n tokens)."""

    W_qkv: Tensor  # (3d, d) query (pre-scaled by 1/sqrt(d_h)), key, value weights stacked
    q: Tensor  # (H, n, d_h) pre-scaled by 1/sqrt(d_h)
    k: Tensor  # (H, n, d_h)
    v: Tensor  # (H, n, d_h)
    A: Tensor  # (H, n, n) attention probabilities
    W_o: Tensor | None = None  # (d, d) attention output projection
    ln1: tuple[Tensor, Tensor, Tensor] | None = None  # (gamma (d), rstd (n,1), xhat (n,d))
    W_i: Tensor | None = None  # (d_ff, d)
    act_grad: Tensor | None = None  # (n, d_ff) derivative of the activation at its input
    W_2: Tensor | None = None  # (d, d_ff)
    ln2: tuple[Tensor, Tensor, Tensor] | None = None


def _ln_state(ln: torch.nn.LayerNorm, r: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    mu = r.mean(-1, keepdim=True)
    var = r.var(-1, unbiased=False, keepdim=True)
    rstd = torch.rsqrt(var + ln.eps)
    xhat = (r - mu) * rstd
    return ln.weight.to(dtype), rstd.to(dtype), xhat.to(dtype)


def _activation_grad(act, u: Tensor) -> Tensor:
    """Element-wise derivative of the activation at ``u`` (computed once, on the primal)."""
    _, g = torch.func.jvp(act, (u,), (torch.ones_like(u),))
    return g


@torch.no_grad()
def primal_states(model: torch.nn.Module, x: Tensor, dtype: torch.dtype) -> list[LayerState]:
    """Run the encoder on one segment's input vectors ``x`` (1, n, d) and keep the tangent rules' inputs.

    Weights and primal tensors are cast to ``dtype``, the dtype the tangents travel in.
    """
    layers = model.encoder.layer
    H = model.config.num_attention_heads
    mask4 = extended_mask(torch.ones(x.shape[:2], device=x.device), x.dtype)
    h = x
    states = []
    for idx, layer in enumerate(layers):
        sa = layer.attention.self
        n = h.shape[1]
        q = sa.query(h).view(n, H, -1).transpose(0, 1)
        k = sa.key(h).view(n, H, -1).transpose(0, 1)
        v = sa.value(h).view(n, H, -1).transpose(0, 1)
        context, A = sa(h, attention_mask=mask4)
        W_qkv = torch.cat([sa.query.weight * sa.scaling, sa.key.weight, sa.value.weight], 0)
        st = LayerState(
            W_qkv=W_qkv.to(dtype),
            q=(q * sa.scaling).to(dtype),
            k=k.to(dtype),
            v=v.to(dtype),
            A=A[0].to(dtype),
        )
        if idx + 1 < len(layers):
            out = layer.attention.output
            r1 = out.dense(context) + h
            st.W_o = out.dense.weight.to(dtype)
            st.ln1 = _ln_state(out.LayerNorm, r1[0], dtype)
            a = out.LayerNorm(r1)
            inter = layer.intermediate
            u = inter.dense(a)
            st.W_i = inter.dense.weight.to(dtype)
            st.act_grad = _activation_grad(inter.intermediate_act_fn, u[0]).to(dtype)
            ffn = layer.output
            r2 = ffn.dense(inter.intermediate_act_fn(u)) + a
            st.W_2 = ffn.dense.weight.to(dtype)
            st.ln2 = _ln_state(ffn.LayerNorm, r2[0], dtype)
            h = ffn.LayerNorm(r2)
        states.append(st)
    return states


def layernorm_tangent(dr: Tensor, ln: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """JVP of LayerNorm: ``dy = gamma * rstd * (dr - mean(dr) - xhat * mean(dr * xhat))``; dr (T, n, d)."""
    gamma, rstd, xhat = ln
    centred = dr - dr.mean(-1, keepdim=True) - xhat * (dr * xhat).mean(-1, keepdim=True)
    return centred * (rstd * gamma)


def softmax_tangent(A: Tensor, dS: Tensor) -> Tensor:
    """JVP of the row softmax: ``dA = A * (dS - sum_j A_ij dS_ij)``; A (H, n, n), dS (T, H, n, n)."""
    return A * (dS - (A * dS).sum(-1, keepdim=True))


def attention_tangent_dense(st: LayerState, dh: Tensor) -> Tensor:
    """Tangent of every head output of one layer, ``d o`` (T, H, n, d_h), for dense input tangents dh (T, n, d)."""
    T, n, d = dh.shape
    H = st.q.shape[0]
    dqkv = (dh.reshape(T * n, d) @ st.W_qkv.T).view(T, n, 3, H, -1)
    dq, dk, dv = (dqkv[:, :, c].permute(0, 2, 1, 3) for c in range(3))  # (T, H, n, d_h)
    dS = dq @ st.k.transpose(-1, -2) + st.q @ dk.transpose(-1, -2)  # q is pre-scaled
    dA = softmax_tangent(st.A, dS)
    return dA @ st.v + st.A @ dv


def attention_tangent_rows(st: LayerState, rows: Tensor, vecs: Tensor) -> Tensor:
    """Head-output tangents (T, H, n, d_h) for one-row input tangents ``dx_t = e_{rows_t} vecs_t^T``.

    Q, K and V of such a tangent are single rows (``vecs_t W^T``), so the score tangent is
    one row (from dq) plus one column (from dk) and ``A dV`` is an outer product.
    """
    T = vecs.shape[0]
    H, n, _ = st.q.shape
    dqkv = (vecs @ st.W_qkv.T).view(T, 3, H, -1)  # (T, 3, H, d_h)
    dq, dk, dv = dqkv[:, 0], dqkv[:, 1], dqkv[:, 2]  # (T, H, d_h)
    t = torch.arange(T, device=vecs.device)
    row = torch.einsum("thd,hjd->thj", dq, st.k)  # dS[t, h, rows_t, :]
    col = torch.einsum("hid,thd->thi", st.q, dk)  # dS[t, h, :, rows_t]
    dS = torch.zeros(T, H, n, n, dtype=vecs.dtype, device=vecs.device)
    dS[t, :, rows, :] = row
    dS[t, :, :, rows] += col
    dA = softmax_tangent(st.A, dS)
    A_col = st.A[:, :, rows].permute(2, 0, 1)  # (T, H, n): A[h, i, rows_t]
    return dA @ st.v + A_col[..., None] * dv[:, :, None, :]


def rows_to_dense(rows: Tensor, vecs: Tensor, n: int) -> Tensor:
    """Dense tangents (T, n, d) from one-row tangents."""
    T, d = vecs.shape
    dh = torch.zeros(T, n, d, dtype=vecs.dtype, device=vecs.device)
    dh[torch.arange(T, device=vecs.device), rows] = vecs
    return dh


def layer_rest_tangent(st: LayerState, do: Tensor, dh: Tensor) -> Tensor:
    """Tangent of the layer output given head-output tangents do (T, H, n, d_h) and the layer input's dh (T, n, d)."""
    T, H, n, dk = do.shape
    d = H * dk
    dcontext = do.transpose(1, 2).reshape(T * n, d)
    dr1 = (dcontext @ st.W_o.T).view(T, n, d) + dh
    da = layernorm_tangent(dr1, st.ln1)
    du = (da.reshape(T * n, d) @ st.W_i.T).view(T, n, -1) * st.act_grad
    dr2 = (du.reshape(T * n, -1) @ st.W_2.T).view(T, n, d) + da
    return layernorm_tangent(dr2, st.ln2)


def project_heads(do: Tensor, W_o: Tensor) -> Tensor:
    """Projected head outputs ``do_i W_O^h``: (T, H, n, d_h) -> (T, H, n, d); W_o (d, H*d_h)."""
    T, H, n, dk = do.shape
    W_h = W_o.view(W_o.shape[0], H, dk).permute(1, 2, 0)  # (H, d_h, d)
    return do @ W_h


def accumulate_squared_norms(
    states: list[LayerState],
    rows: Tensor,
    vecs: Tensor,
    weights: Tensor,
    S2: Tensor,
    head_output: str = "context",
    W_out: list[Tensor] | None = None,
) -> None:
    """Push one chunk of one-row tangents through all layers; add ``w_t ||d o||^2`` into S2 (L, H, n, n) in place.

    ``rows`` (T,) token index j_t, ``vecs`` (T, d) the tangent's row, ``weights`` (T,) w_t.
    """
    L = len(states)
    n = states[0].A.shape[-1]
    dh = None
    for l, st in enumerate(states):
        if l == 0:
            do = attention_tangent_rows(st, rows, vecs)
        else:
            do = attention_tangent_dense(st, dh)
        heads = project_heads(do, W_out[l]) if head_output == "projected" else do
        sq = heads.to(S2.dtype).pow(2).sum(-1)  # (T, H, n_i), accumulated in S2's dtype (>= float32)
        S2[l].index_add_(2, rows, (sq * weights[:, None, None]).permute(1, 2, 0))
        if l + 1 < L:
            if l == 0:
                dh = rows_to_dense(rows, vecs, n)
            dh = layer_rest_tangent(st, do, dh)
