"""Forward-mode propagation of many input tangents through a BERT-like (post-norm) encoder at once.

This is the engine behind ``exact``, ``grad_x_input`` and ``sketch``. For one segment
(n tokens, no padding) it takes T input tangents, each non-zero in a single token row
(``dx_t = e_{j_t} v_t^T`` with ``v_t`` in R^d), and returns for every layer and head the
accumulated squared tangent norms

    S2[l, h, i, j] = sum_{t : j_t = j} w_t ||d o^{l,h}_i [dx_t]||^2          (L, H, n, n)

where ``d o[dx]`` is the Jacobian-vector product of the head output ``o^{l,h}_i`` with the
tangent. With ``v_t = e_c`` for every coordinate c and ``w_t = 1`` this is the squared
Frobenius norm of the Jacobian block ``d o_i / d x_j`` (DESIGN.md ``exact``).

It is ``torch.func.jvp`` under ``vmap`` written out by hand (the *linearised* forward): the
primal pass runs once through the Hugging Face modules, and everything the tangents need is
folded into a few matrices per layer (:class:`Engine`). The tangents then travel as one
``(n*T, d)`` matrix, token-major (row ``i*T + t`` is tangent t at token i), and each layer
costs a handful of large matmuls and almost no element-wise work:

- **Everything after self-attention is one matrix per token.** The output projection's
  residual, LayerNorm, the feed-forward block and the second LayerNorm act on each token
  separately, and their tangent maps are linear: ``dh_out_i = (dc_i W_O^T + dh_i) N_i`` with
  ``N_i = P1_i (I + W_1^T diag(act'(u_i)) W_2^T) P2_i`` and ``P_i`` the LayerNorm tangent
  (centring, projection off ``xhat_i``, scaling by ``gamma * rstd_i``). One ``d x d`` matmul
  per token replaces the ``2 d d_ff`` feed-forward matmuls and all of the LayerNorm and
  activation work (about 4x fewer FLOPs for ``d_ff = 4d``).
- **Scores without the query/key tangents.** For short segments (``H n <= d + n``) the score
  tangent ``dS_ik = dq_i . k_k + q_i . dk_k`` comes straight from the residual tangent through
  ``W_q^T k^T`` and ``W_k^T q^T`` (``d x H n`` each), in the same matmul as the value tangent
  (longer segments compute ``dq``, ``dk`` and two batched matmuls).
- **No softmax row sums.** ``d o_i = sum_k E_ik (v_k - o_i) + sum_k A_ik dv_k``: the softmax
  tangent's ``- r_i A_ik`` term is absorbed by shifting the values by the head output
  (no cancellation, which keeps bfloat16 accurate).
- **The first layer uses the one-row structure** of the input tangents in closed form, and the
  **last layer stops at the head outputs**.
- ``head_output=projected`` uses ``||d o W_O^h||^2 = ||d o R_h||^2`` with ``R_h R_h^T = W_O^h W_O^h^T``
  (``d_h x d_h``) instead of projecting to ``d``.

The per-token maps take ``(L-1) n d^2`` values and the shifted values ``A_ik (v_k - o_i)``
``L n^2 d``; the engine's ``map_budget`` holds the maps of the first layers, then the shifted
values of the first layers with what is left (:func:`held_layers`). Layers whose maps do not fit
fall back to the plain rules (output projection, LayerNorm, feed-forward with the activation's
derivative, LayerNorm: same result, more FLOPs); layers whose shifted values do not fit rebuild
them one head at a time in each chunk (same result, ``n^2 d`` more element-wise work per chunk).

Squared norms go to S2 through a small matmul with the tangents' one-hot token weights, in a
chunk-local buffer that is added to S2 only when the whole chunk went through (an
out-of-memory retry never counts a layer twice). ``tests/test_attribution.py`` checks the
engine against brute-force Jacobians; ``tests/test_benchmark.py`` against ``torch.func.jvp``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bertstory.models.families import LayerParts, family_of


@dataclass
class LayerPlan:
    """What one layer's tangent rules need (one segment, n tokens), in the tangent dtype."""

    A: Tensor  # (H, n, n) attention probabilities
    VA: Tensor | None  # (H, n_i, n_k, d_h): A_ik (v_k - o_i); None: rebuilt per chunk from v and o
    W_in: Tensor  # fold: (d, Hn + d) [W_q^T k^T | W_v^T]; else (d, 3d) [W_q | W_k | W_v]^T
    W_sT: Tensor | None = None  # fold: (Hn, d) rows (h, i): (W_k^T q_i)^T
    q: Tensor | None = None  # no fold: (H, n, d_h), pre-scaled by 1/sqrt(d_h)
    k: Tensor | None = None  # no fold: (H, n, d_h)
    W_oT: Tensor | None = None  # (d, d) attention output projection, transposed; None in the last layer
    N: Tensor | None = None  # (n, d, d) per-token map from the residual tangent to the layer output
    plain: tuple | None = None  # without N: (s1, xhat1, W_1^T, act'(u), W_2^T, s2, xhat2)
    R: Tensor | None = None  # (H, d_h, d_h) projected-norm factor (head_output=projected)
    v: Tensor | None = None  # without VA: (H, n, d_h) values
    o: Tensor | None = None  # without VA: (H, n, d_h) head outputs


@dataclass
class FirstLayer:
    """Extra primal quantities of layer 0 for one-row input tangents."""

    W_qkv: Tensor  # (d, 3d) [W_q * scaling; W_k; W_v] transposed
    q: Tensor  # (H, n, d_h) pre-scaled
    v: Tensor  # (H, n, d_h)
    o: Tensor  # (H, n, d_h) head outputs
    G: Tensor  # (H, n, d_h, d_h): G_j = sum_k A_jk k_k (v_k - o_j)^T


def fold_scores(H: int, n: int, d: int) -> bool:
    """Whether the per-token score maps (d x 2Hn per token) are cheaper than q/k tangents (d x 2d shared)."""
    return H * n <= d + n


def held_layers(L: int, n: int, d: int, itemsize: int, budget: int | None) -> tuple[int, int]:
    """``(map_layers, va_layers)``: how many leading layers keep their per-token residual map
    (``n d^2`` values each, layers 0..L-2) and their shifted values (``n^2 d`` each) within ``budget`` bytes
    (None: all). The maps come first: they save ``7 d^2`` multiply-adds per tangent row and layer."""
    if budget is None:
        return L - 1, L
    maps = min(L - 1, budget // (n * d * d * itemsize))
    return maps, min(L, (budget - maps * n * d * d * itemsize) // (n * n * d * itemsize))


def layernorm_stats(ln: torch.nn.LayerNorm, r: Tensor) -> tuple[Tensor, Tensor]:
    """``(s, xhat)`` of LayerNorm at the primal ``r`` (n, d).

    Its tangent is ``dy = (dr - mean(dr) - xhat mean(dr xhat)) s``.
    """
    mu = r.mean(-1, keepdim=True)
    var = r.var(-1, unbiased=False, keepdim=True)
    rstd = torch.rsqrt(var + ln.eps)
    return ln.weight.to(r.dtype) * rstd, (r - mu) * rstd


def centre_rows(Z: Tensor, xhat: Tensor) -> Tensor:
    """``C Z`` in place for ``C_i = I - 11^T/d - xhat_i xhat_i^T/d``; Z (n, d, e), xhat (n, d)."""
    d = Z.shape[-2]
    Z -= Z.sum(-2, keepdim=True) / d + xhat[:, :, None] * (xhat[:, None, :] @ Z) / d
    return Z


def centre_cols(Z: Tensor, xhat: Tensor) -> Tensor:
    """``Z C`` in place for ``C_i = I - 11^T/d - xhat_i xhat_i^T/d``; Z (n, e, d), xhat (n, d)."""
    d = Z.shape[-1]
    Z -= Z.sum(-1, keepdim=True) / d + (Z @ xhat[:, :, None]) * xhat[:, None, :] / d
    return Z


def activation_grad(act, u: Tensor) -> Tensor:
    """Element-wise derivative of the activation at ``u`` (computed once, on the primal)."""
    _, g = torch.func.jvp(act, (u,), (torch.ones_like(u),))
    return g


def residual_map(
    parts: LayerParts, r1: Tensor, u: Tensor, r2: Tensor, block: int = 16, mm_dtype: torch.dtype | None = None
) -> Tensor:
    """Per-token matrices ``N_i`` (n, d, d): the tangent of the layer output w.r.t. ``r1 = context W_O^T + b + h``.

    ``N_i = C1_i diag(s1_i) (I + W_1^T diag(act'(u_i)) W_2^T) C2_i diag(s2_i)``, row-vector convention
    (``dh_out = dr1 @ N_i``); ``u`` is the feed-forward pre-activation, ``r2`` the second LayerNorm's
    input (all (n, .) primal rows). Tokens go in blocks to bound memory. ``mm_dtype`` runs the
    feed-forward product in a lower precision (bfloat16 tangents: the map is rounded to it anyway).
    """
    W1 = parts.ff_in.weight.to(r1.dtype)  # (d_ff, d)
    W2 = parts.ff_out.weight.to(r1.dtype)  # (d, d_ff)
    s1, x1 = layernorm_stats(parts.ln1, r1)
    s2, x2 = layernorm_stats(parts.ln2, r2)
    g = activation_grad(parts.act, u)  # (n, d_ff)
    n, d = r1.shape
    N = torch.empty(n, d, d, dtype=r1.dtype, device=r1.device)
    eye = torch.eye(d, dtype=r1.dtype, device=r1.device)
    mm_dtype = mm_dtype or r1.dtype
    W1T, W2T, g = W1.T.to(mm_dtype), W2.T.to(mm_dtype), g.to(mm_dtype)
    for a in range(0, n, block):
        b = min(n, a + block)
        Z = (W1T[None] * g[a:b, None, :]) @ W2T  # (m, d, d) = W_1^T diag(g) W_2^T
        Z = Z.to(r1.dtype)
        Z += eye
        Z *= s1[a:b, :, None]
        centre_rows(Z, x1[a:b])
        centre_cols(Z, x2[a:b])
        Z *= s2[a:b, None, :]
        N[a:b] = Z
    return N


def shifted_values(A: Tensor, v: Tensor, o: Tensor) -> Tensor:
    """``A_ik (v_k - o_i)`` (..., n_i, n_k, d_h) from A (..., n, n), values and head outputs v, o (..., n, d_h)."""
    return A[..., None] * (v[..., None, :, :] - o[..., :, None, :])


def projected_factor(W_o: Tensor, H: int) -> Tensor:
    """``R_h`` (H, d_h, d_h) with ``R_h R_h^T = W_O^h W_O^h^T`` (``W_O^h`` = the (d_h, d) rows acting on head h)."""
    d = W_o.shape[0]
    W_h = W_o.double().view(d, H, -1).permute(1, 2, 0)  # (H, d_h, d): o_h @ W_h is the projected output
    lam, U = torch.linalg.eigh(W_h @ W_h.transpose(1, 2))
    return (U * lam.clamp_min(0).sqrt()[:, None, :]).to(W_o.dtype)


def layernorm_tangent(dr: Tensor, s: Tensor, xhat: Tensor) -> Tensor:
    """JVP of LayerNorm, ``(dr - mean(dr) - xhat mean(dr xhat)) s``, for dr (n, T, d) and per-token s, xhat (n, d)."""
    xhat = xhat[:, None, :]
    centred = dr - dr.mean(-1, keepdim=True) - xhat * (dr * xhat).mean(-1, keepdim=True)
    return centred.mul_(s[:, None, :])


def plain_residual(plain: tuple, dr: Tensor) -> Tensor:
    """The layer output's tangent (n, T, d) from ``dr1`` without the per-token map: LayerNorm,
    feed-forward with the activation's derivative, residual, LayerNorm."""
    s1, x1, W1T, g, W2T, s2, x2 = plain
    n, T, d = dr.shape
    da = layernorm_tangent(dr, s1, x1)
    du = (da.view(n * T, d) @ W1T).view(n, T, -1).mul_(g[:, None, :])
    dr2 = torch.addmm(da.view(n * T, d), du.view(n * T, -1), W2T).view(n, T, d)
    return layernorm_tangent(dr2, s2, x2)


class Engine:
    """The linearised forward of one segment: primal pass once, then :meth:`push` chunks of one-row tangents.

    ``model`` an encoder whose family has ``fast = True``, ``x`` (1, n, d) the encoder input vectors, ``dtype`` the
    tangent dtype (bfloat16 tangents keep float32 norms and accumulation), ``head_output``
    ``context`` or ``projected``, ``fold`` forces the score path (None: the cheaper one),
    ``map_budget`` bounds the bytes of the per-token residual maps (None: no bound).
    """

    def __init__(
        self,
        model,
        x: Tensor,
        dtype: torch.dtype,
        head_output: str = "context",
        fold: bool | None = None,
        map_budget: int | None = None,
    ):
        self.dtype = dtype
        self.head_output = head_output
        fam = family_of(model)
        if not fam.fast:
            raise ValueError(f"the fast engine does not apply to the {fam.name} family: use the generic path")
        self.L, self.H, self.d = fam.L, fam.H, fam.d
        self.n = x.shape[1]
        self.fold = fold_scores(self.H, self.n, self.d) if fold is None else fold
        self.acc = torch.float64 if dtype == torch.float64 else torch.float32
        self.map_budget = map_budget
        self.map_layers, self.va_layers = held_layers(self.L, self.n, self.d, dtype.itemsize, map_budget)
        self.plans: list[LayerPlan] = []
        self.first: FirstLayer | None = None
        self._primal(model, x)

    # ------------------------------------------------------------------ primal pass
    @torch.no_grad()
    def _primal(self, model, x: Tensor) -> None:
        H, n, d, dt = self.H, self.n, self.d, self.dtype
        # primal and folding in at least float32 (float64 when either is float64), then cast to dt
        work = torch.promote_types(x.dtype, torch.promote_types(dt, torch.float32))
        fam = family_of(model)
        seg = fam.segment(x, torch.ones(x.shape[:2], dtype=torch.long, device=x.device))
        h = x
        for idx in range(self.L):
            parts = fam.parts(idx)
            run = fam.run_layer(idx, h, seg)
            context = run.context
            hw = h[0].to(work)
            Wq = parts.query.weight.to(work) * parts.scaling
            Wk = parts.key.weight.to(work)
            Wv = parts.value.weight.to(work)
            q = (hw @ Wq.T + parts.query.bias.to(work) * parts.scaling).view(n, H, -1).transpose(0, 1)
            k = (hw @ Wk.T + parts.key.bias.to(work)).view(n, H, -1).transpose(0, 1)
            v = (hw @ Wv.T + parts.value.bias.to(work)).view(n, H, -1).transpose(0, 1)
            A = run.A[0].to(work)
            o = A @ v  # (H, n, d_h)
            if self.fold:
                s_row = torch.einsum("hed,hke->dhk", Wq.view(H, -1, d), k)  # dq_i . k_k = x_i @ s_row[:, h, k]
                s_col = torch.einsum("hed,hie->dhi", Wk.view(H, -1, d), q)  # q_i . dk_k = x_k @ s_col[:, h, i]
                W_in = torch.cat([s_row.reshape(d, H * n), Wv.T], 1)
            else:
                W_in = torch.cat([Wq, Wk, Wv], 0).T
            keep_va = idx < self.va_layers
            plan = LayerPlan(
                A=A.to(dt),
                VA=shifted_values(A, v, o).to(dt) if keep_va else None,
                W_in=W_in.contiguous().to(dt),
                v=None if keep_va else v.to(dt).contiguous(),
                o=None if keep_va else o.to(dt).contiguous(),
            )
            if self.fold:
                plan.W_sT = s_col.reshape(d, H * n).T.contiguous().to(dt)
            else:
                plan.q = q.to(dt).contiguous()
                plan.k = k.to(dt).contiguous()
            W_o = parts.out.weight.to(work)
            if self.head_output == "projected":
                plan.R = projected_factor(W_o, H).to(dt)
            if idx == 0:
                G = torch.einsum("hjk,hke,hjkf->hjef", A, k, v[:, None, :, :] - o[:, :, None, :])
                self.first = FirstLayer(
                    W_qkv=torch.cat([Wq, Wk, Wv], 0).T.contiguous().to(dt),
                    q=q.to(dt).contiguous(),
                    v=v.to(dt).contiguous(),
                    o=o.to(dt).contiguous(),
                    G=G.to(dt).contiguous(),
                )
            if idx + 1 < self.L:
                r1 = parts.out(context) + h
                a = parts.ln1(r1)
                u = parts.ff_in(a)
                r2 = parts.ff_out(parts.act(u)) + a
                plan.W_oT = W_o.T.contiguous().to(dt)
                r1w, uw, r2w = r1[0].to(work), u[0].to(work), r2[0].to(work)
                if idx < self.map_layers:
                    low = dt if dt.itemsize < 4 else None  # bfloat16 maps: their product in bfloat16
                    plan.N = residual_map(parts, r1w, uw, r2w, mm_dtype=low).to(dt)
                else:
                    s1, x1 = layernorm_stats(parts.ln1, r1w)
                    s2, x2 = layernorm_stats(parts.ln2, r2w)
                    g = activation_grad(parts.act, uw)
                    W1 = parts.ff_in.weight.to(work)
                    W2 = parts.ff_out.weight.to(work)
                    plan.plain = tuple(t.contiguous().to(dt) for t in (s1, x1, W1.T, g, W2.T, s2, x2))
                h = run.out
            self.plans.append(plan)

    # ------------------------------------------------------------------ tangent pass
    def push(self, rows: Tensor, vecs: Tensor, weights: Tensor, S2: Tensor) -> None:
        """Push one chunk of one-row tangents through all layers and add ``w_t ||d o||^2`` into S2 (L, H, n, n).

        ``rows`` (T,) token index j_t, ``vecs`` (T, d) the tangent's row, ``weights`` (T,) w_t.
        S2 is changed only after the whole chunk went through.
        """
        with torch.no_grad():
            S2 += self.chunk_norms(rows, vecs.to(self.dtype), weights)

    def chunk_norms(self, rows: Tensor, vecs: Tensor, weights: Tensor) -> Tensor:
        """``sum_t w_t ||d o^{l,h}_i [dx_t]||^2`` scattered to (L, H, n_i, n_j) for one chunk."""
        T = rows.shape[0]
        n, H, L = self.n, self.H, self.L
        onehot = torch.zeros(T, n, dtype=self.acc, device=vecs.device)
        onehot[torch.arange(T, device=vecs.device), rows] = weights.to(self.acc)
        out = torch.empty(L, H, n, n, dtype=self.acc, device=vecs.device)
        do = self.first_layer(rows, vecs)  # (H, n, T, d_h)
        X = None
        for l, plan in enumerate(self.plans):
            if l > 0:
                do = self.attention(plan, X, T)
            sq = self.squared_norms(plan, do)  # (H, n_i, T)
            torch.matmul(sq, onehot, out=out[l])
            if l + 1 < L:
                X = self.residual(plan, do, X, rows, vecs)
        return out

    def first_layer(self, rows: Tensor, vecs: Tensor) -> Tensor:
        """Head-output tangents (H, n, T, d_h) of layer 0 for one-row tangents ``dx_t = e_{rows_t} vecs_t^T``.

        ``d o_i = A_ij c_i (v_j - o_i) + A_ij dv + [i = j] dq^T G_j`` with ``c_i = q_i . dk`` (per head).
        """
        f, A = self.first, self.plans[0].A
        T = rows.shape[0]
        H = self.H
        dqkv = (vecs @ f.W_qkv).view(T, 3, H, -1)
        dq, dk, dv = dqkv[:, 0].transpose(0, 1), dqkv[:, 1].transpose(0, 1), dqkv[:, 2].transpose(0, 1)  # (H, T, d_h)
        a = A[:, :, rows]  # (H, n, T): A[h, i, j_t]
        c = f.q @ dk.transpose(1, 2)  # (H, n, T): q_i . dk_t
        b = (a * c)[..., None]
        vj = f.v[:, rows]  # (H, T, d_h)
        do = torch.sub(vj[:, None], f.o[:, :, None])  # (H, n, T, d_h)
        do.mul_(b).addcmul_(a[..., None], dv[:, None])
        ar = torch.arange(T, device=vecs.device)
        diag = (dq[:, :, None, :] @ f.G[:, rows]).squeeze(2)  # (H, T, d_h): dq_t^T G_{j_t}
        do[:, rows, ar] += diag
        return do

    def attention(self, plan: LayerPlan, X: Tensor, T: int) -> Tensor:
        """Head-output tangents (H, n, T, d_h) for dense residual tangents X (n*T, d), token-major.

        ``d o_i = sum_k A_ik dv_k + sum_k A_ik dS_ik (v_k - o_i)``: the score tangent's two parts
        (``dq_i . k_k`` and ``q_i . dk_k``) are contracted with ``A_ik (v_k - o_i)`` separately, each
        in the layout its matmul produced, so no score-sized tensor is ever transposed or summed.
        """
        H, n, d = self.H, self.n, self.d
        Y = X @ plan.W_in  # (nT, C), rows token-major
        if self.fold:
            rowpart = Y[:, : H * n].view(n, T, H, n)  # [i, t, h, k] dq_i . k_k
            colpart = (plan.W_sT @ X.T).view(H * n, n, T).transpose(1, 2)  # [(h, i), t, k] q_i . dk_k
            dv = Y[:, H * n :]
        else:
            Yqkv = Y.view(n * T, 3, H, -1)
            dq = Yqkv[:, 0].transpose(0, 1)  # (H, nT, d_h)
            dk = Yqkv[:, 1].transpose(0, 1)
            rowpart = torch.matmul(dq, plan.k.transpose(1, 2)).view(H * n, T, n)  # [(h, i), t, k]
            colpart = torch.matmul(plan.q, dk.transpose(1, 2)).view(H * n, n, T).transpose(1, 2)
            dv = Y[:, 2 * d :]
        dv = dv.view(n, T, H, -1).permute(2, 0, 1, 3).reshape(H, n, -1)  # (H, n_k, T*d_h)
        do = torch.bmm(plan.A, dv).view(H * n, T, -1)  # sum_k A_ik dv_k
        if plan.VA is None:  # one head at a time: VA_h (n, n, d_h) rebuilt from v and o
            do4, col4 = do.view(H, n, T, -1), colpart.view(H, n, T, n)
            for h in range(H):
                VA_h = shifted_values(plan.A[h], plan.v[h], plan.o[h])
                do4[h].baddbmm_(col4[h], VA_h)
                do4[h].baddbmm_(rowpart[:, :, h] if self.fold else rowpart.view(H, n, T, n)[h], VA_h)
            return do4
        VA = plan.VA.view(H * n, n, -1)  # [(h, i), k, :] A_ik (v_k - o_i)
        do.baddbmm_(colpart, VA)
        if self.fold:
            do4 = do.view(H, n, T, -1)
            VA4 = plan.VA
            for h in range(H):
                do4[h].baddbmm_(rowpart[:, :, h], VA4[h])
        else:
            do.baddbmm_(rowpart, VA)
        return do.view(H, n, T, -1)

    def squared_norms(self, plan: LayerPlan, do: Tensor) -> Tensor:
        """``||d o||^2`` (H, n, T) in the accumulation dtype."""
        if plan.R is not None:
            H, n, T, e = do.shape
            do = torch.bmm(do.view(H, n * T, e), plan.R).view(H, n, T, e)
        # the norm is accumulated in float32 inside the reduction; only its result is rounded to
        # the tangent dtype (bfloat16: 2^-9 relative, unbiased), which avoids an upcast copy of do
        return torch.linalg.vector_norm(do, dim=-1).to(self.acc).square_()

    def residual(self, plan: LayerPlan, do: Tensor, X: Tensor | None, rows: Tensor, vecs: Tensor) -> Tensor:
        """The next layer's input tangents (n*T, d): ``(dc W_O^T + dh) N_i`` per token."""
        H, n, T, e = do.shape
        dc = do.permute(1, 2, 0, 3).reshape(n * T, H * e)  # heads concatenated, token-major
        if X is None:  # layer 0: the input tangent is one row
            dr = dc @ plan.W_oT
            dr.view(n, T, -1)[rows, torch.arange(T, device=dr.device)] += vecs
        else:
            dr = torch.addmm(X, dc, plan.W_oT)
        if plan.N is not None:
            return torch.bmm(dr.view(n, T, -1), plan.N).view(n * T, -1)
        return plain_residual(plan.plain, dr.view(n, T, -1)).view(n * T, -1)

    def nbytes(self) -> int:
        """Memory held by the precomputed matrices."""
        total = 0
        for p in self.plans:
            for t in (p.A, p.VA, p.W_in, p.W_sT, p.q, p.k, p.W_oT, p.N, p.R, p.v, p.o, *(p.plain or ())):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total

