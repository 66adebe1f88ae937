"""The vectors attributed to (``attribution.wrt``) and their per-token Jacobians."""

from __future__ import annotations

import torch
from torch import Tensor

from bertstory.models.forward import embed, embeddings_from_words


def input_jacobians(model: torch.nn.Module, input_ids: Tensor, token_type_ids: Tensor, wrt: str):
    """Inputs and their per-token Jacobians.

    Returns ``(x, inp, E)``: x (1, n, d) the encoder input vectors, inp (n, d_in) the vectors
    being attributed to (x itself or the word embeddings), and E (n, d, d_in) with
    ``E_j = d x_j / d inp_j`` (None for ``wrt=embeddings``, where it is the identity).
    The embedding block acts on each token separately, so one JVP per input coordinate
    c with tangent e_c at every token gives column c of every E_j.
    """
    x, w = embed(model, input_ids, token_type_ids)
    if wrt == "embeddings":
        return x, x[0], None
    d_in = w.shape[-1]

    def f(words):
        return embeddings_from_words(model, words, input_ids, token_type_ids)

    eye = torch.eye(d_in, dtype=w.dtype, device=w.device)
    tangents = eye[:, None, None, :].expand(d_in, 1, w.shape[1], d_in)
    cols = torch.func.vmap(lambda t: torch.func.jvp(f, (w,), (t,))[1])(tangents)  # (d_in, 1, n, d)
    E = cols[:, 0].permute(1, 2, 0)  # (n, d, d_in)
    return x, w[0], E
