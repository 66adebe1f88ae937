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
from tests.conftest import make_method

MIXING = ["attention_norm", "globenc", "alti", "value_zeroing", "rollout"]
TOL = 1e-8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def segment(tiny):
    e = tiny.tokenizer("The cat sat.", "It purred.")
    return torch.tensor([e["input_ids"]]), torch.tensor([e["token_type_ids"]])


# --------------------------------------------------------------------------- random models of every family

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100)
CONFIGS = {
    "mpnet": ("MPNet", SMALL),
    "distilbert": ("DistilBert", dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=100)),
    "albert": ("Albert", {**SMALL, "embedding_size": 16}),
    "deberta_v2": ("DebertaV2", {**SMALL, "relative_attention": True, "pos_att_type": ["p2c", "c2p"],
                                 "max_relative_positions": 8, "position_buckets": 4}),
    # a global layer, then a sliding-window layer (window 4) that matters at 9 tokens, then a global one
    "modernbert": ("ModernBert", {**SMALL, "num_hidden_layers": 3, "pad_token_id": 0, "bos_token_id": 1,
                                  "eos_token_id": 2, "cls_token_id": 1, "sep_token_id": 2,
                                  "global_attn_every_n_layers": 2, "local_attention": 4}),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def family(request):
    """(name, random float64 model of that family, 9 random token ids (1, 9), token types None)."""
    import transformers

    prefix, options = CONFIGS[request.param]
    config = getattr(transformers, f"{prefix}Config")(**options)
    torch.manual_seed(1)
    model = getattr(transformers, f"{prefix}Model")._from_config(config, attn_implementation="eager")
    model = model.double().eval()
    ids = torch.randint(3, 100, (1, 9))
    if request.param == "modernbert":  # the sliding-window layer really masks distant keys at this length
        A = hf_pass(model, ids, None).attentions
        assert (A[1][0, :, 0, -1] == 0).all() and (A[0][0, :, 0, -1] > 0).all()
    return request.param, model, ids, None


# --------------------------------------------------------------------------- references


def hf_pass(model, ids, tt):
    kwargs = {} if tt is None else {"token_type_ids": tt}
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True,
                     output_attentions=True, **kwargs)


def ref_layers(model) -> list:
    kind = model.config.model_type
    if kind == "distilbert":
        return list(model.transformer.layer)
    if kind == "albert":
        return [model.encoder.albert_layer_groups[0].albert_layers[0]] * model.config.num_hidden_layers
    return list(model.layers if kind == "modernbert" else model.encoder.layer)


def ref_modules(model, layer):
    """Where each family keeps, by name: value (weight, bias) from the attention input, W_O, b_O, LN1, LN2, the
    feed-forward block, and the attention input from the layer input (pre-norm only)."""
    kind, d = model.config.model_type, model.config.hidden_size
    if kind == "modernbert":
        W = layer.attn.Wqkv.weight[2 * d:]
        return dict(Wv=W, bv=torch.zeros(d, dtype=W.dtype), Wo=layer.attn.Wo, ln1=None, ln2=None,
                    ffn=lambda y: layer.mlp(layer.mlp_norm(y)), pre=layer.attn_norm)
    if kind == "distilbert":
        a = layer.attention
        return dict(Wv=a.v_lin.weight, bv=a.v_lin.bias, Wo=a.out_lin, ln1=layer.sa_layer_norm,
                    ln2=layer.output_layer_norm, ffn=layer.ffn, pre=None)
    if kind == "albert":
        a = layer.attention
        return dict(Wv=a.value.weight, bv=a.value.bias, Wo=a.dense, ln1=a.LayerNorm, ln2=layer.full_layer_layer_norm,
                    ffn=lambda y: layer.ffn_output(layer.activation(layer.ffn(y))), pre=None)
    if kind == "mpnet":
        a = layer.attention.attn
        value, Wo, ln1 = a.v, a.o, layer.attention.LayerNorm
    else:
        value = layer.attention.self.value_proj if kind == "deberta-v2" else layer.attention.self.value
        Wo, ln1 = layer.attention.output.dense, layer.attention.output.LayerNorm
    return dict(Wv=value.weight, bv=value.bias, Wo=Wo, ln1=ln1, ln2=layer.output.LayerNorm,
                ffn=lambda y: layer.output.dense(layer.intermediate.intermediate_act_fn(layer.intermediate.dense(y))),
                pre=None)


def ref_layer(model, layer, x, A, H):
    """The vectors of one layer recomputed from its weights: f[h][j] (d), the LayerNorm inputs r1, r2 (n, d; None
    pre-norm), the first LayerNorm's output y (pre-norm: the residual stream after attention) and the layer output."""
    m = ref_modules(model, layer)
    d = x.shape[-1]
    dh = d // H
    n = x.shape[0]
    v = (x if m["pre"] is None else m["pre"](x)) @ m["Wv"].T + m["bv"]  # (n, d)
    W = m["Wo"].weight  # (d, d): projected = c @ W.T
    b_O = m["Wo"].bias if m["Wo"].bias is not None else torch.zeros(d, dtype=x.dtype)
    f = [[v[j, h * dh:(h + 1) * dh] @ W[:, h * dh:(h + 1) * dh].T for j in range(n)] for h in range(H)]
    r1 = torch.stack([sum(A[h, i, j] * f[h][j] for h in range(H) for j in range(n)) + b_O + x[i] for i in range(n)])
    if m["ln1"] is None:
        return f, None, None, r1, r1 + m["ffn"](r1), m
    y = m["ln1"](r1)
    r2 = m["ffn"](y) + y
    return f, r1, r2, y, m["ln2"](r2), m


def g(ln, z, r_i):
    """A LayerNorm's linear part for position i: gamma (z - mean z) / sqrt(var(r_i) + eps); None: the identity."""
    if ln is None:
        return z
    return ln.weight * (z - z.mean()) / torch.sqrt(r_i.var(unbiased=False) + ln.eps)


def layer_outputs(model, ids, tt):
    """Each layer's own output in a plain forward pass (a hook on the HF layer module)."""
    outs = []
    hooks = [layer.register_forward_hook(lambda _m, _a, o: outs.append((o[0] if isinstance(o, tuple) else o)[0]))
             for layer in dict.fromkeys(ref_layers(model))]
    try:
        hf_pass(model, ids, tt)
    finally:
        for h in hooks:
            h.remove()
    return outs


def ref_matrices(model, ids, tt, method):
    """C (L, H, n, n) and M (L, n, n) of a norm method by explicit loops."""
    out = hf_pass(model, ids, tt)
    outputs = layer_outputs(model, ids, tt)
    H = model.config.num_attention_heads
    n = ids.shape[1]
    Cs, Ms = [], []
    for l, layer in enumerate(ref_layers(model)):
        x, A = out.hidden_states[l][0], out.attentions[l][0]
        f, r1, r2, y, layer_out, m = ref_layer(model, layer, x, A, H)
        assert torch.allclose(layer_out, outputs[l], atol=1e-12)  # the recomputation is the layer itself
        ln1, ln2 = m["ln1"], m["ln2"]
        C = torch.zeros(H, n, n, dtype=torch.float64)
        M = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            r1i = None if r1 is None else r1[i]
            r2i = None if r2 is None else r2[i]
            yh = [sum(g(ln1, A[h, i, k] * f[h][k], r1i) for k in range(n)) for h in range(H)]
            for j in range(n):
                z = sum(A[h, i, j] * f[h][j] for h in range(H)) + (x[i] if i == j else 0)
                for h in range(H):
                    zh = A[h, i, j] * f[h][j]
                    if method == "attention_norm":
                        C[h, i, j] = zh.norm()
                    elif method == "globenc":
                        C[h, i, j] = g(ln2, g(ln1, zh, r1i), r2i).norm()
                    elif method == "alti":
                        C[h, i, j] = max(0.0, (yh[h].abs().sum() - (yh[h] - g(ln1, zh, r1i)).abs().sum()).item())
                if method == "attention_norm":
                    M[i, j] = g(ln1, z, r1i).norm()
                elif method == "globenc":
                    M[i, j] = g(ln2, g(ln1, z, r1i), r2i).norm()
                elif method == "alti":
                    M[i, j] = max(0.0, (y[i].abs().sum() - (y[i] - g(ln1, z, r1i)).abs().sum()).item())
        Cs.append(C)
        Ms.append(M)
    return torch.stack(Cs), torch.stack(Ms)


def value_module(model, layer):
    """The HF module whose output holds the values, and their first column."""
    kind = model.config.model_type
    if kind == "modernbert":
        return layer.attn.Wqkv, 2 * model.config.hidden_size
    if kind == "distilbert":
        return layer.attention.v_lin, 0
    if kind == "albert":
        return layer.attention.value, 0
    if kind == "mpnet":
        return layer.attention.attn.v, 0
    return (layer.attention.self.value_proj if kind == "deberta-v2" else layer.attention.self.value), 0


def ref_value_zeroing(model, ids, tt):
    """C and M by zeroing v^h_j (or v_j in all heads) inside the HF value module and running the whole model."""
    base = layer_outputs(model, ids, tt)
    H = model.config.num_attention_heads
    n = ids.shape[1]
    L = model.config.num_hidden_layers
    dh = model.config.hidden_size // H
    C = torch.zeros(L, H, n, n, dtype=torch.float64)
    M = torch.zeros(L, n, n, dtype=torch.float64)
    layers = ref_layers(model)
    for l, layer in enumerate(layers):
        module, first = value_module(model, layer)
        # a shared module (ALBERT) runs once per layer: zero its output in its call as layer l only
        call = sum(value_module(model, other)[0] is module for other in layers[:l]) + 1
        for j in range(n):
            for h in [*range(H), None]:
                cols = slice(first, first + H * dh) if h is None else slice(first + h * dh, first + (h + 1) * dh)
                calls = []

                def zero(_m, _i, o, j=j, cols=cols, calls=calls, call=call):
                    calls.append(1)
                    if len(calls) != call:
                        return o
                    o = o.clone()
                    o[0, j, cols] = 0
                    return o

                handle = module.register_forward_hook(zero)
                try:
                    changed = layer_outputs(model, ids, tt)[l]
                finally:
                    handle.remove()
                for i in range(n):
                    dist = 1 - F.cosine_similarity(changed[i], base[l][i], dim=0)
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
    key = (model.config.model_type, id(model), tuple(ids[0].tolist()), method)
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


@pytest.mark.slow
@pytest.mark.parametrize("method", MIXING)
def test_method_matches_its_formula_in_every_family(family, method):
    name, model, ids, tt = family
    got, zero_rows = normalise_rows(make_method(method, dtype="float64").scores(model, ids, tt))
    assert zero_rows == 0 and got.dtype == torch.float64
    torch.testing.assert_close(got, reference_maps(model, ids, tt, method), atol=TOL, rtol=0)


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
