"""Tests of the attribution methods against independent brute-force computations of DESIGN.md's definitions.

The references never use bertstory's forward pieces: head outputs are read with forward
hooks on the Hugging Face modules during a plain ``model(...)`` call, the encoder input
(or the word-embedding lookup) is replaced by a hook, and Jacobians come from
``torch.autograd.functional.jacobian``. Everything runs on the random ``tiny`` model in float64.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bertstory.attribution.engine as engine_mod  # noqa: E402
import bertstory.attribution.forward_mode as forward_mode  # noqa: E402
from bertstory.attribution import Attribution, normalise_rows  # noqa: E402
from bertstory.errors import BertstoryError  # noqa: E402
from tests.conftest import CONF_DIR, hf_head_outputs, hf_inputs, make_method  # noqa: E402

ALL_METHODS = ["exact", "grad_x_input", "sketch", "grad_sum", "rollout", "none",
               "attention_norm", "globenc", "alti", "value_zeroing"]
TEXTS = [("The cat sat.", "It purred."), ("Hello, world!", None), ("Short one", None)]
# options that make every method run in float64 where it has a choice
OPTS = {
    "exact": dict(dtype="float64"),
    "grad_x_input": dict(dtype="float64"),
    "sketch": dict(dtype="float64", probes=8, seed=3),
    "grad_sum": dict(dtype="float64"),
    "rollout": dict(dtype="float64"),
    "none": dict(),
    **{m: dict(dtype="float64") for m in ("attention_norm", "globenc", "alti", "value_zeroing")},
}


# --------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_thread")


def encode(tokenizer, a, b=None):
    e = tokenizer(a, b) if b else tokenizer(a)
    return torch.tensor([e["input_ids"]]), torch.tensor([e["token_type_ids"]])


@pytest.fixture(scope="module")
def segment(tiny):
    """One segment (a sentence pair, so token types 0 and 1 both occur): input_ids, token_type_ids (1, n)."""
    ids, tt = encode(tiny.tokenizer, *TEXTS[0])
    assert tt.max() == 1
    return ids, tt


@pytest.fixture(scope="module")
def short(tiny):
    """A short segment (4 tokens) for the tests that loop over many small chunks."""
    ids, tt = encode(tiny.tokenizer, *TEXTS[2])
    assert ids.shape[1] == 4
    return ids, tt


@pytest.fixture(scope="module")
def batch(tiny):
    """Three segments of different lengths, right-padded: ids, mask, token types (3, n), and the segments."""
    segs = [encode(tiny.tokenizer, a, b) for a, b in TEXTS]
    n = max(s[0].shape[1] for s in segs)
    ids = torch.full((len(segs), n), tiny.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    tt = torch.zeros_like(ids)
    for b, (i, t) in enumerate(segs):
        k = i.shape[1]
        ids[b, :k], mask[b, :k], tt[b, :k] = i[0], 1, t[0]
    assert len({s[0].shape[1] for s in segs}) == len(segs)
    return ids, mask, tt, segs


# --------------------------------------------------------------------------- brute-force references


_JACOBIANS: dict = {}


def jacobian(model, ids, tt, wrt, head_output, mask=None):
    """Brute-force Jacobian J[l, h, i, a, j, c] = d o^{l,h}_i[a] / d inp_j[c] and the input inp (n, d_in)."""
    key = (id(model), tuple(ids[0].tolist()), wrt, head_output, None if mask is None else tuple(mask[0].tolist()))
    if key not in _JACOBIANS:
        inp = hf_inputs(model, ids, tt, wrt, mask)
        f = hf_head_outputs(model, ids, tt, wrt, head_output, mask)
        J = torch.autograd.functional.jacobian(f, inp, vectorize=True, strategy="forward-mode")
        _JACOBIANS[key] = (J, inp)
    return _JACOBIANS[key]


def ref_exact(J):
    return J.pow(2).sum((3, 5)).sqrt()  # ||d o_i / d x_j||_F, (L, H, n, n)


def ref_grad_x_input(J, inp):
    return (J * inp).pow(2).sum((3, 5)).sqrt()  # ||J_ij diag(x_j)||_F


def ref_grad_sum(J):
    return J.sum(3).pow(2).sum(-1).sqrt()  # ||d (sum_a o_i[a]) / d x_j||_2


def hand_rollout(attentions):
    """Per-head rollout with explicit loops; attentions: list over layers of (H, n, n) nested lists."""
    L, H, n = len(attentions), len(attentions[0]), len(attentions[0][0])
    R = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    out = []
    for l in range(L):
        A = attentions[l]
        out.append(
            [[[sum(A[h][i][k] * R[k][j] for k in range(n)) for j in range(n)] for i in range(n)] for h in range(H)]
        )
        mixed = [
            [0.5 * sum(A[h][i][k] for h in range(H)) / H + (0.5 if i == k else 0.0) for k in range(n)] for i in range(n)
        ]
        R = [[sum(mixed[i][k] * R[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
    return torch.tensor(out, dtype=torch.float64)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a.double(), b.double(), atol=tol, rtol=tol)


# --------------------------------------------------------------------------- registry and options


def test_every_method_config_builds_its_method():
    names = {p.stem for p in (CONF_DIR / "attribution").glob("*.yaml") if not p.stem.startswith("_")}
    assert names == set(ALL_METHODS) | {"quick"}
    for name in ALL_METHODS:
        method = make_method(name, **OPTS[name])
        assert isinstance(method, Attribution) and method.name == name
        assert method.produces_maps == (name != "none")


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("exact", dict(wrt="foo"), "wrt"),
        ("grad_sum", dict(wrt="foo"), "wrt"),
        ("rollout", dict(wrt="foo"), "wrt"),
        ("exact", dict(head_output="foo"), "head_output"),
        ("exact", dict(dtype="int8"), "dtype"),
        ("exact", dict(engine="reverse"), "engine"),
        ("exact", dict(chunk_size=0), "chunk_size"),
        ("sketch", dict(probes=0), "probes"),
        ("sketch", dict(probes=-3), "probes"),
    ],
)
def test_bad_options(name, options, words):
    with pytest.raises(BertstoryError, match=words):
        make_method(name, **options)


def test_info_names_the_method():
    info = make_method("sketch", probes=4, seed=1, wrt="word").info()
    assert info["name"] == "sketch" and info["wrt"] == "word" and info["head_output"] == "context"
    assert info["probes"] == 4 and info["seed"] == 1


# --------------------------------------------------------------------------- exact, grad_x_input, grad_sum


@pytest.mark.parametrize("head_output", ["context", "projected"])
@pytest.mark.parametrize("wrt", ["embeddings", "word"])
@pytest.mark.parametrize("engine", ["fast", "jvp"])
def test_exact_equals_jacobian_norms(tiny, segment, engine, wrt, head_output):
    ids, tt = segment
    J, _ = jacobian(tiny.model, ids, tt, wrt, head_output)
    s = make_method("exact", engine=engine, wrt=wrt, head_output=head_output, dtype="float64")
    got = s.scores(tiny.model, ids, tt)
    n = ids.shape[1]
    assert got.shape == (2, 4, n, n)
    close(got, ref_exact(J))


@pytest.mark.parametrize(
    "engine, wrt, head_output",
    [("fast", "embeddings", "context"), ("jvp", "embeddings", "context"), ("fast", "word", "projected")],
)
def test_grad_x_input_equals_definition(tiny, segment, engine, wrt, head_output):
    ids, tt = segment
    J, inp = jacobian(tiny.model, ids, tt, wrt, head_output)
    s = make_method("grad_x_input", engine=engine, wrt=wrt, head_output=head_output, dtype="float64")
    got = s.scores(tiny.model, ids, tt)
    close(got, ref_grad_x_input(J, inp))
    assert not torch.allclose(got, ref_exact(J))  # the weighting does something


@pytest.mark.parametrize("wrt, head_output", [("embeddings", "context"), ("word", "projected")])
def test_grad_sum_equals_definition(tiny, segment, wrt, head_output):
    ids, tt = segment
    J, _ = jacobian(tiny.model, ids, tt, wrt, head_output)
    got = make_method("grad_sum", wrt=wrt, head_output=head_output).scores(tiny.model, ids, tt)
    close(got, ref_grad_sum(J))


def test_exact_float32_is_close_to_float64(tiny, segment):
    ids, tt = segment
    s64 = make_method("exact", dtype="float64").scores(tiny.model, ids, tt)
    s32 = make_method("exact", dtype="float32").scores(tiny.model, ids, tt)
    torch.testing.assert_close(s32.double(), s64, atol=1e-5, rtol=1e-4)


def test_normalised_exact_equals_normalised_reference(tiny, segment):
    ids, tt = segment
    J, _ = jacobian(tiny.model, ids, tt, "embeddings", "context")
    ref = ref_exact(J)
    got = make_method("exact", dtype="float64").attribute(tiny.model, ids, torch.ones_like(ids), tt).maps
    assert got.dtype == torch.float32
    close(got[0], ref / ref.sum(-1, keepdim=True))


# --------------------------------------------------------------------------- sketch


def sketch_sq(model, ids, tt, probes, seed, wrt="embeddings"):
    s = make_method("sketch", probes=probes, seed=seed, wrt=wrt, dtype="float64")
    return s.scores(model, ids, tt).pow(2)


@pytest.mark.parametrize("wrt", ["embeddings", "word"])
def test_sketch_error_shrinks_with_probes(tiny, segment, wrt):
    ids, tt = segment
    J, _ = jacobian(tiny.model, ids, tt, wrt, "context")
    exact2 = ref_exact(J).pow(2)

    def err(probes):
        return ((sketch_sq(tiny.model, ids, tt, probes, seed=0, wrt=wrt) - exact2).abs() / exact2).mean().item()

    e4, e32, e256 = err(4), err(32), err(256)
    assert e256 < e32 < e4
    assert e256 < e4 / 4  # ~ 1/sqrt(probes): a factor 8 expected
    assert e256 < 0.1


def test_sketch_is_seeded(tiny, segment):
    ids, tt = segment
    a = sketch_sq(tiny.model, ids, tt, 4, seed=7)
    b = sketch_sq(tiny.model, ids, tt, 4, seed=7)
    c = sketch_sq(tiny.model, ids, tt, 4, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_sketch_is_unbiased(tiny, segment):
    """The mean over seeds of few-probe estimates of s^2 converges to exact's s^2: no bias at a fixed probe count."""
    ids, tt = segment
    J, _ = jacobian(tiny.model, ids, tt, "embeddings", "context")
    exact2 = ref_exact(J).pow(2)
    K = 64
    est = torch.stack([sketch_sq(tiny.model, ids, tt, 4, seed=seed) for seed in range(K)])  # (K, L, H, n, n)

    def mean_err(k):
        return ((est[:k].mean(0) - exact2).abs() / exact2).mean().item()

    assert mean_err(K) < mean_err(4) / 2.5  # error ~ 1/sqrt(seeds): a factor 4 expected, no plateau
    assert mean_err(K) < 0.05
    # no systematic bias: the signed relative error averaged over all entries is ~0
    bias = ((est.mean(0) - exact2) / exact2).mean().item()
    assert abs(bias) < 0.02
    # the square root of the mean (not the mean of square roots) is what converges to exact
    torch.testing.assert_close(est.mean(0).sqrt(), ref_exact(J), atol=0, rtol=0.1)


# --------------------------------------------------------------------------- rollout


def test_rollout_matches_hand_computation(tiny, segment):
    ids, tt = segment
    with torch.no_grad():
        out = tiny.model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=tt, output_attentions=True)
    ref = hand_rollout([a[0].tolist() for a in out.attentions])
    got = make_method("rollout").scores(tiny.model, ids, tt)
    close(got, ref, 1e-10)
    # layer 0 is attention itself; rollout rows stay distributions
    close(got[0], out.attentions[0][0], 1e-12)
    close(got.sum(-1), torch.ones_like(got.sum(-1)), 1e-12)


# --------------------------------------------------------------------------- batches, padding, normalisation


@pytest.mark.parametrize("name", ALL_METHODS)
def test_padded_batch_equals_one_segment_at_a_time(tiny, batch, name):
    ids, mask, tt, segs = batch
    method = make_method(name, **OPTS[name])
    got = method.attribute(tiny.model, ids, mask, tt).maps
    if name == "none":
        assert got is None
        return
    B, n = ids.shape
    assert got.shape == (B, 2, 4, n, n) and got.dtype == torch.float32
    for b, (i, t) in enumerate(segs):
        k = i.shape[1]
        one = make_method(name, **OPTS[name]).attribute(tiny.model, i, torch.ones_like(i), t).maps
        close(got[b, :, :, :k, :k], one[0])
        if k < n:
            assert got[b, :, :, k:, :].abs().max().item() == 0


@pytest.mark.parametrize("name", [m for m in ALL_METHODS if m != "none"])
def test_rows_normalised_with_zero_padding(tiny, batch, name):
    ids, mask, tt, _ = batch
    a = make_method(name, **OPTS[name]).attribute(tiny.model, ids, mask, tt).maps
    m = mask.to(a.dtype)
    valid = m[:, None, None, :, None] * m[:, None, None, None, :]  # (B, 1, 1, n, n)
    assert (a >= 0).all()
    assert (a * (1 - valid)).abs().max().item() == 0  # padding rows and padding keys
    sums = a.sum(-1)  # (B, L, H, n)
    close(sums, m[:, None, None, :].expand_as(sums), 1e-6)


def test_padded_model_agrees_with_exact(tiny, batch):
    """The definition on the padded segment (HF forward with its attention mask) equals exact's output."""
    ids, mask, tt, _ = batch
    b = 1
    k = int(mask[b].sum())
    J, _ = jacobian(tiny.model, ids[b : b + 1], tt[b : b + 1], "embeddings", "context", mask[b : b + 1])
    ref = ref_exact(J)[:, :, :k, :k]
    assert ref_exact(J)[:, :, :k, k:].abs().max().item() < 1e-12  # padding inputs have no influence
    got = make_method("exact", dtype="float64").attribute(tiny.model, ids, mask, tt).maps
    close(got[b, :, :, :k, :k], ref / ref.sum(-1, keepdim=True))


def test_normalise_rows_rule():
    s = torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 4.0]])
    a, zero = normalise_rows(s)
    close(a, torch.tensor([[0.25, 0.75, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.25, 0.25, 0.5]]), 1e-7)
    assert zero == 1


# --------------------------------------------------------------------------- chunks and memory


@pytest.mark.parametrize(
    "engine, chunk_size",
    [("fast", 1), ("fast", 7), ("jvp", 1), ("jvp", 7)],
)
def test_chunk_size_does_not_change_exact(tiny, short, engine, chunk_size):
    ids, tt = short
    auto = make_method("exact", engine=engine, chunk_size=None, dtype="float64")
    fixed = make_method("exact", engine=engine, chunk_size=chunk_size, dtype="float64")
    close(fixed.scores(tiny.model, ids, tt), auto.scores(tiny.model, ids, tt), 1e-10)


def test_chunk_size_does_not_change_sketch_and_grad_sum(tiny, short):
    ids, tt = short
    for name, extra in (("sketch", dict(probes=5, seed=2)), ("grad_sum", {})):
        r = [
            make_method(name, chunk_size=c, dtype="float64", **extra).scores(tiny.model, ids, tt)
            for c in (1, 7, None)
        ]
        close(r[0], r[2], 1e-10)
        close(r[1], r[2], 1e-10)


@pytest.mark.parametrize("engine", ["fast", "jvp"])
def test_out_of_memory_halves_the_chunk(tiny, segment, monkeypatch, engine):
    """An allocation failure for chunks over 16 tangents: the chunk halves (64 -> 32 -> 16) and the result is exact."""
    ids, tt = segment
    attr = "_fast_pusher" if engine == "fast" else "_jvp_pusher"
    original = getattr(forward_mode.ForwardModeAttribution, attr)
    seen = []

    def failing(self, model, x, dtype):
        push = original(self, model, x, dtype)

        def wrapped(rows, vecs, weights, S2):
            seen.append(len(rows))
            if len(rows) > 16:
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")
            return push(rows, vecs, weights, S2)

        return wrapped

    monkeypatch.setattr(forward_mode.ForwardModeAttribution, attr, failing)
    method = make_method("exact", engine=engine, chunk_size=64, dtype="float64")
    got = method.scores(tiny.model, ids, tt)
    assert seen[:3] == [64, 32, 16] and max(seen[2:]) <= 16
    assert method.chunk_size == 64  # the back-off stays inside the call: the method keeps no state
    seen.clear()
    method.scores(tiny.model, ids, tt)
    assert seen[:3] == [64, 32, 16]
    J, _ = jacobian(tiny.model, ids, tt, "embeddings", "context")
    close(got, ref_exact(J))


def test_other_errors_are_not_swallowed(tiny, segment, monkeypatch):
    ids, tt = segment
    original = forward_mode.ForwardModeAttribution._fast_pusher

    def failing(self, model, x, dtype):
        original(self, model, x, dtype)

        def wrapped(rows, vecs, weights, S2):
            raise RuntimeError("shape mismatch (injected)")

        return wrapped

    monkeypatch.setattr(forward_mode.ForwardModeAttribution, "_fast_pusher", failing)
    with pytest.raises(RuntimeError, match="injected"):
        make_method("exact", chunk_size=64).scores(tiny.model, ids, tt)


def test_out_of_memory_midway_through_a_chunk(tiny, segment, monkeypatch):
    """A failure between layer 0 and layer 1 of the fast engine, after layer 0's norms of the chunk were computed."""
    ids, tt = segment
    original = engine_mod.Engine.residual  # maps layer l's head-output tangents to layer l+1's input

    def failing(self, plan, do, X, rows, vecs):
        if rows.shape[0] > 16:
            raise torch.OutOfMemoryError("out of memory (injected)")
        return original(self, plan, do, X, rows, vecs)

    monkeypatch.setattr(engine_mod.Engine, "residual", failing)
    method = make_method("exact", chunk_size=64, dtype="float64")
    got = method.scores(tiny.model, ids, tt)
    J, _ = jacobian(tiny.model, ids, tt, "embeddings", "context")
    close(got, ref_exact(J))
