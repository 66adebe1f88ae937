"""The context-mixing methods against plain reimplementations of DESIGN.md's formulas, in float64.

The references never use bertstory's hooks or vector capture: layer inputs and attention come
from the model's own ``output_hidden_states``/``output_attentions``, values and the LayerNorm
inputs are recomputed from the modules' weights, every score is an explicit loop over heads,
queries and tokens, and the composition is a loop over layers. Value Zeroing's reference zeroes
one value vector inside the Hugging Face value module and runs the whole model again, per
(layer, head, token), with ``1 - cos`` as the distance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bertstory.attribution import normalise_rows
from bertstory.attribution.mixing import compose
from bertstory.attribution.norms import row_blocks
from bertstory.attribution.vectors import capture
from bertstory.errors import BertstoryError
from bertstory.models import load_encoder
from tests.conftest import TINY, make_method

MIXING = ["attention_norm", "globenc", "alti", "value_zeroing", "rollout"]
TOL = 1e-8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY, dtype="float64")


@pytest.fixture(scope="module")
def segment(tiny):
    e = tiny.tokenizer("The cat sat.", "It purred.")
    return torch.tensor([e["input_ids"]]), torch.tensor([e["token_type_ids"]])


# --------------------------------------------------------------------------- references, BERT family


def hf_pass(model, ids, tt):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=tt,
                     output_hidden_states=True, output_attentions=True)


def ref_layer(layer, x, A, H):
    """The vectors of one BERT layer recomputed from its weights: f[h][j] (d), the LayerNorm inputs r1, r2
    (n, d) and y = LN1(r1)."""
    sa, out = layer.attention.self, layer.attention.output
    d = x.shape[-1]
    dh = d // H
    v = x @ sa.value.weight.T + sa.value.bias  # (n, d)
    W = out.dense.weight  # (d, d): y = c @ W.T
    f = [[v[j, h * dh:(h + 1) * dh] @ W[:, h * dh:(h + 1) * dh].T for j in range(x.shape[0])] for h in range(H)]
    n = x.shape[0]
    r1 = torch.stack([sum(A[h, i, j] * f[h][j] for h in range(H) for j in range(n)) + out.dense.bias + x[i]
                      for i in range(n)])
    y = out.LayerNorm(r1)
    r2 = layer.output.dense(layer.intermediate.intermediate_act_fn(layer.intermediate.dense(y))) + y
    return f, r1, r2, y


def g(ln, z, r_i):
    """A LayerNorm's linear part for position i: gamma (z - mean z) / sqrt(var(r_i) + eps)."""
    return ln.weight * (z - z.mean()) / torch.sqrt(r_i.var(unbiased=False) + ln.eps)


def ref_matrices(model, ids, tt, method):
    """C (L, H, n, n) and M (L, n, n) of a norm method by explicit loops."""
    out = hf_pass(model, ids, tt)
    H = model.config.num_attention_heads
    n = ids.shape[1]
    Cs, Ms = [], []
    for l, layer in enumerate(model.encoder.layer):
        x, A = out.hidden_states[l][0], out.attentions[l][0]
        f, r1, r2, y = ref_layer(layer, x, A, H)
        ln1, ln2 = layer.attention.output.LayerNorm, layer.output.LayerNorm
        assert torch.allclose(layer.output.LayerNorm(r2), out.hidden_states[l + 1][0], atol=1e-12)
        C = torch.zeros(H, n, n, dtype=torch.float64)
        M = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            yh = [sum(g(ln1, A[h, i, k] * f[h][k], r1[i]) for k in range(n)) for h in range(H)]
            for j in range(n):
                z = sum(A[h, i, j] * f[h][j] for h in range(H)) + (x[i] if i == j else 0)
                for h in range(H):
                    zh = A[h, i, j] * f[h][j]
                    if method == "attention_norm":
                        C[h, i, j] = zh.norm()
                    elif method == "globenc":
                        C[h, i, j] = g(ln2, g(ln1, zh, r1[i]), r2[i]).norm()
                    elif method == "alti":
                        C[h, i, j] = max(0.0, (yh[h].abs().sum() - (yh[h] - g(ln1, zh, r1[i])).abs().sum()).item())
                if method == "attention_norm":
                    M[i, j] = g(ln1, z, r1[i]).norm()
                elif method == "globenc":
                    M[i, j] = g(ln2, g(ln1, z, r1[i]), r2[i]).norm()
                elif method == "alti":
                    M[i, j] = max(0.0, (y[i].abs().sum() - (y[i] - g(ln1, z, r1[i])).abs().sum()).item())
        Cs.append(C)
        Ms.append(M)
    return torch.stack(Cs), torch.stack(Ms)


def ref_value_zeroing(model, ids, tt):
    """C and M by zeroing v^h_j (or v_j in all heads) inside the HF value module and running the whole model."""
    base = hf_pass(model, ids, tt).hidden_states
    H = model.config.num_attention_heads
    n = ids.shape[1]
    L = model.config.num_hidden_layers
    dh = model.config.hidden_size // H
    C = torch.zeros(L, H, n, n, dtype=torch.float64)
    M = torch.zeros(L, n, n, dtype=torch.float64)
    for l, layer in enumerate(model.encoder.layer):
        for j in range(n):
            for h in [*range(H), None]:
                cols = slice(0, H * dh) if h is None else slice(h * dh, (h + 1) * dh)

                def zero(_m, _i, o, j=j, cols=cols):
                    o = o.clone()
                    o[0, j, cols] = 0
                    return o

                handle = layer.attention.self.value.register_forward_hook(zero)
                try:
                    changed = hf_pass(model, ids, tt).hidden_states[l + 1][0]
                finally:
                    handle.remove()
                for i in range(n):
                    dist = 1 - F.cosine_similarity(changed[i], base[l + 1][0][i], dim=0)
                    if h is None:
                        M[l, i, j] = dist
                    else:
                        C[l, h, i, j] = dist
    return C, M


def ref_normalise(s):
    return s / s.sum(-1, keepdim=True)


def ref_compose(C, M, normalise_layers):
    """C^{l,h} R^{l-1} with R^l = N(M^l) R^{l-1}, by a loop over layers."""
    L, H, n, _ = C.shape
    R = torch.eye(n, dtype=torch.float64)
    out = torch.zeros_like(C)
    for l in range(L):
        for h in range(H):
            out[l, h] = C[l, h] @ R
        R = (ref_normalise(M[l]) if normalise_layers else M[l]) @ R
    return out


_REFERENCES: dict = {}


def reference_maps(model, ids, tt, method, scope="global"):
    key = (id(model), tuple(ids[0].tolist()), method)
    if key not in _REFERENCES:
        _REFERENCES[key] = reference_matrices(model, ids, tt, method)
    C, M = _REFERENCES[key]
    s = C if scope == "local" else ref_compose(C, M, method != "globenc")
    return ref_normalise(s)


def reference_matrices(model, ids, tt, method):
    if method == "value_zeroing":
        C, M = ref_value_zeroing(model, ids, tt)
    elif method == "rollout":
        A = torch.stack(hf_pass(model, ids, tt).attentions)[:, 0]
        C, M = A, 0.5 * A.mean(1) + 0.5 * torch.eye(ids.shape[1], dtype=A.dtype)
    else:
        C, M = ref_matrices(model, ids, tt, method)
    return C, M


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("method", MIXING)
def test_method_matches_its_formula(tiny, segment, method, scope):
    ids, tt = segment
    got, zero_rows = normalise_rows(make_method(method, dtype="float64", scope=scope).scores(tiny.model, ids, tt))
    assert zero_rows == 0 and got.dtype == torch.float64
    torch.testing.assert_close(got, reference_maps(tiny.model, ids, tt, method, scope), atol=TOL, rtol=0)


def test_layernorm_terms_add_up_to_its_output(tiny, segment):
    """sum_j g_1(z_ij) + g_1(b_O) + beta_1 = y_i: the captured vectors and statistics are those of the pass."""
    ids, tt = segment
    for vec, layer in zip(capture(tiny.model, ids, tt, torch.float64), tiny.model.encoder.layer, strict=True):
        z = torch.einsum("hij,hjd->ijd", vec.A, vec.f) + torch.diag_embed(vec.x.T).permute(1, 2, 0)
        terms = (vec.ln1.centre(z) * vec.ln1.inv_s[:, None, None]).sum(1)
        y = terms + vec.ln1.centre(vec.b_O) * vec.ln1.inv_s[:, None] + layer.attention.output.LayerNorm.bias
        torch.testing.assert_close(y, vec.y, atol=1e-12, rtol=0)


def test_row_blocks_do_not_change_the_result(tiny, segment, monkeypatch):
    import bertstory.attribution.norms as norms

    ids, tt = segment
    whole = make_method("alti", dtype="float64").scores(tiny.model, ids, tt)
    monkeypatch.setattr(norms, "BLOCK_ELEMENTS", 1)
    assert len(row_blocks(4, ids.shape[1], 32, 1)) == ids.shape[1]
    torch.testing.assert_close(make_method("alti", dtype="float64").scores(tiny.model, ids, tt), whole,
                               atol=1e-14, rtol=0)


def test_value_zeroing_chunks_do_not_change_the_result(tiny, segment):
    ids, tt = segment
    a = make_method("value_zeroing", dtype="float64").scores(tiny.model, ids, tt)
    b = make_method("value_zeroing", dtype="float64", chunk_size=3).scores(tiny.model, ids, tt)
    torch.testing.assert_close(a, b, atol=1e-14, rtol=0)


def test_padded_batch_equals_single_segments(tiny):
    texts = [("The cat sat.", "It purred."), ("Hello, world!", None)]
    encs = [tiny.tokenizer(a, b) if b else tiny.tokenizer(a) for a, b in texts]
    n = max(len(e["input_ids"]) for e in encs)
    ids = torch.zeros(2, n, dtype=torch.long)
    mask, tt = torch.zeros_like(ids), torch.zeros_like(ids)
    for b, e in enumerate(encs):
        k = len(e["input_ids"])
        ids[b, :k], mask[b, :k], tt[b, :k] = torch.tensor(e["input_ids"]), 1, torch.tensor(e["token_type_ids"])
    method = make_method("globenc", dtype="float64")
    batch = method.attribute(tiny.model, ids, mask, tt).maps
    for b, e in enumerate(encs):
        k = len(e["input_ids"])
        one = method.attribute(tiny.model, ids[b:b + 1, :k], mask[b:b + 1, :k], tt[b:b + 1, :k]).maps
        torch.testing.assert_close(batch[b, :, :, :k, :k], one[0], atol=1e-7, rtol=0)
        assert batch[b, :, :, k:].abs().sum() == 0 and batch[b, :, :, :, k:].abs().sum() == 0


def test_compose_of_rollout_is_rollout():
    """Rows of M that already sum to 1 are left as they are; scaling a row of C changes nothing after normalising."""
    torch.manual_seed(0)
    A = torch.rand(3, 2, 5, 5, dtype=torch.float64).softmax(-1)
    M = 0.5 * A.mean(1) + 0.5 * torch.eye(5, dtype=torch.float64)
    scaled = A * torch.rand(3, 2, 5, 1, dtype=torch.float64)
    torch.testing.assert_close(ref_normalise(compose(scaled, M)), ref_normalise(compose(A, M)), atol=1e-14, rtol=0)
    torch.testing.assert_close(compose(A, M), ref_compose(A, M, True), atol=1e-14, rtol=0)


@pytest.mark.parametrize("override, message", [
    (dict(scope="both"), "attribution.scope must be"),
    (dict(wrt="word"), "leave attribution.wrt=embeddings"),
    (dict(chunk_size=1), "chunk_size must be at least 2"),
])
def test_bad_options_are_refused_in_one_line(override, message):
    method = "value_zeroing"
    with pytest.raises(BertstoryError, match=message) as e:
        make_method(method, **override)
    assert "\n" not in str(e.value)
