"""Every encoder family on a random model made offline from its transformers config (hidden 32, 2-3 layers).

References come from the Hugging Face modules alone, never from bertstory's adapters: attention from
``model(..., output_attentions=True)``, ``hidden_states[0]`` from ``output_hidden_states``, and head outputs
from forward hooks on each family's output projection (module names written out below), differentiated
with ``torch.autograd.functional.jacobian``.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bertstory.errors import BertstoryError  # noqa: E402
from bertstory.models import family_of, load_encoder  # noqa: E402
from bertstory.models.families import family_name  # noqa: E402
from tests.conftest import make_method  # noqa: E402

V = 120  # vocabulary of the random models
N = 10  # segment length: longer than ModernBERT's sliding window (2 each side here)


def config(kind: str):
    import transformers as t

    common = dict(vocab_size=V, hidden_size=32, num_attention_heads=4, intermediate_size=64, pad_token_id=0)
    if kind == "bert":
        return t.BertConfig(num_hidden_layers=2, **common)
    if kind == "mpnet":
        return t.MPNetConfig(num_hidden_layers=2, **common)
    if kind == "distilbert":
        return t.DistilBertConfig(vocab_size=V, dim=32, n_heads=4, hidden_dim=64, n_layers=2, pad_token_id=0)
    if kind == "albert":  # 3 layers sharing one set of weights, embeddings of size 16 projected to 32
        return t.AlbertConfig(num_hidden_layers=3, embedding_size=16, **common)
    if kind == "deberta_v2":  # DeBERTa-v3 style: both relative terms, shared keys, log buckets
        return t.DebertaV2Config(num_hidden_layers=2, relative_attention=True, pos_att_type=["c2p", "p2c"],
                                 position_buckets=8, max_relative_positions=16, share_att_key=True,
                                 norm_rel_ebd="layer_norm", position_biased_input=False, **common)
    if kind == "modernbert":  # layers: global, sliding window (+-2 tokens), global
        return t.ModernBertConfig(num_hidden_layers=3, global_attn_every_n_layers=2, local_attention=4,
                                  bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, **common)
    raise AssertionError(kind)


KINDS = ["bert", "mpnet", "distilbert", "albert", "deberta_v2", "modernbert"]

# where each family's input vectors x come out and where the heads' outputs enter W_O, by HF module name
X_MODULE = {"bert": "embeddings", "mpnet": "embeddings", "distilbert": "embeddings",
            "albert": "encoder.embedding_hidden_mapping_in", "deberta_v2": "embeddings", "modernbert": "embeddings"}
W_O = {"bert": "attention.output.dense", "mpnet": "attention.attn.o", "distilbert": "attention.out_lin",
       "albert": "attention.dense", "deberta_v2": "attention.output.dense", "modernbert": "attn.Wo"}
WORDS = {"modernbert": "embeddings.tok_embeddings"}


def hf_layers(model, kind):
    if kind == "albert":
        return [model.encoder.albert_layer_groups[0].albert_layers[0]]  # one shared layer
    if kind == "distilbert":
        return list(model.transformer.layer)
    if kind == "modernbert":
        return list(model.layers)
    return list(model.encoder.layer)


def make_model(kind):
    import transformers as t

    torch.manual_seed(0)
    cfg = config(kind)
    cfg._attn_implementation = "eager"
    model = t.AutoModel.from_config(cfg, attn_implementation="eager").double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="module", params=KINDS)
def family_model(request):
    return request.param, make_model(request.param)


pytestmark = pytest.mark.usefixtures("one_thread")


def segment(seed: int = 0, n: int = N):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, V, (1, n), generator=g)


def hf_head_outputs(model, kind, ids, wrt):
    """z (n, d_in) -> head outputs (L, H, n, d_h) from HF's forward with x (or the word vectors) replaced by z."""
    H = model.config.num_attention_heads
    modules = dict(model.named_modules())
    source = modules[X_MODULE[kind] if wrt == "embeddings" else WORDS.get(kind, "embeddings.word_embeddings")]

    def f(z):
        captured = []
        hooks = [source.register_forward_hook(lambda _m, _i, _o: z[None])]
        for layer in hf_layers(model, kind):
            out_proj = dict(layer.named_modules())[W_O[kind]]
            hooks.append(out_proj.register_forward_pre_hook(lambda _m, args: captured.append(args[0][0])))
        try:
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        finally:
            for h in hooks:
                h.remove()
        return torch.stack([c.view(c.shape[0], H, -1).transpose(0, 1) for c in captured])  # (L, H, n, d_h)

    return f


def hf_input(model, kind, ids, wrt):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    if wrt == "embeddings":
        return out.hidden_states[0][0]
    return dict(model.named_modules())[WORDS.get(kind, "embeddings.word_embeddings")](ids)[0]


def brute_force(model, kind, ids, wrt):
    """The full Jacobian (L, H, n, d_h, n, d_in) of the hooked HF forward."""
    f = hf_head_outputs(model, kind, ids, wrt)
    return torch.autograd.functional.jacobian(f, hf_input(model, kind, ids, wrt), vectorize=True)


# ---------------------------------------------------------------------------------------------- tests


def test_family_is_detected(family_model):
    kind, model = family_model
    assert family_name(model.config) == kind
    fam = family_of(model)
    assert fam.L == len(torch.stack(model(input_ids=segment(), output_attentions=True).attentions))
    assert fam.fast == (kind not in ("deberta_v2", "modernbert"))


def test_attention_maps_and_inputs_equal_hf(family_model):
    """Attention maps = output_attentions (padding rows/keys zeroed), x = hidden_states[0], on a padded batch."""
    kind, model = family_model
    ids = torch.cat([segment(1), segment(2)])
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0  # two padding tokens (inside every sliding window, so HF's own rows stay finite)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    fam = family_of(model)
    A = fam.attention_maps(ids, mask)
    ref = torch.stack(out.attentions, 1)
    for b, k in enumerate(mask.sum(-1).tolist()):
        torch.testing.assert_close(A[b, :, :, :k, :k], ref[b, :, :, :k, :k], atol=1e-12, rtol=1e-12)
        assert A[b, :, :, k:].abs().sum() == 0 and A[b, :, :, :, k:].abs().sum() == 0
    x, _ = fam.embed(ids, None, mask)
    torch.testing.assert_close(x[0], out.hidden_states[0][0], atol=1e-12, rtol=1e-12)


def test_the_special_parts_matter(family_model):
    """The test models exercise what differs from BERT: ModernBERT's window cuts keys at this length,
    ALBERT's layers share one module, DeBERTa has both relative terms, MPNet's bias is non-zero."""
    kind, model = family_model
    fam = family_of(model)
    A = fam.attention_maps(segment(), torch.ones(1, N, dtype=torch.long))[0]
    if kind == "modernbert":
        kinds = model.config.layer_types
        assert kinds[:2] == ["full_attention", "sliding_attention"]
        assert A[1, :, 0, 4:].abs().max() == 0 and A[0, :, 0, 4:].min() > 0  # window: keys 0..2 of query 0
    if kind == "albert":
        assert fam.parts(0).layer is fam.parts(2).layer
    if kind == "deberta_v2":
        assert set(model.encoder.layer[0].attention.self.pos_att_type) == {"c2p", "p2c"}
    if kind == "mpnet":
        seg = fam.segment(fam.embed(segment())[0], torch.ones(1, N, dtype=torch.long))
        assert seg.extras["position_bias"].abs().max() > 0


@pytest.mark.parametrize("wrt", ["embeddings", "word"])
def test_exact_equals_brute_force(family_model, wrt):
    """exact (fast engine where the family has one, else the generic path) = ||d o_i / d x_j||_F of the HF modules."""
    kind, model = family_model
    ids = segment()
    J = brute_force(model, kind, ids, wrt)
    ref = J.pow(2).sum((3, 5)).sqrt()  # (L, H, n, n)
    tt = torch.zeros_like(ids)
    got = make_method("exact", wrt=wrt, dtype="float64").scores(model, ids, tt)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
    if family_of(model).fast:  # the generic path agrees with the fast one
        generic = make_method("exact", wrt=wrt, dtype="float64", engine="jvp").scores(model, ids, tt)
        torch.testing.assert_close(generic, ref, atol=1e-6, rtol=1e-6)
    # grad_sum: the gradient of the summed head output
    gs = make_method("grad_sum", wrt=wrt).scores(model, ids, tt)
    torch.testing.assert_close(gs, J.sum(3).norm(dim=-1), atol=1e-6, rtol=1e-6)


def test_every_method_runs(family_model):
    """Every method's maps on a padded batch: finite, rows of the real tokens sum to 1, padding zero; rollout
    = the rollout of HF's own attention."""
    kind, model = family_model
    ids = torch.cat([segment(3), segment(4)])
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0
    with torch.no_grad():
        hf_A = torch.stack(model(input_ids=ids[1:], output_attentions=True).attentions, 1)[0]
    for name in ["exact", "grad_x_input", "sketch", "grad_sum", "rollout", "none"]:
        method = make_method(name, dtype="float64") if name != "none" else make_method(name)
        res = method.attribute(model, ids, mask)
        if name == "none":
            assert res.maps is None
            continue
        maps = res.maps
        assert maps.shape == (2, family_of(model).L, 4, N, N) and torch.isfinite(maps).all()
        k = N - 2
        torch.testing.assert_close(maps[0, :, :, :k, :k].sum(-1), torch.ones(maps.shape[1], 4, k))
        assert maps[0, :, :, k:].abs().sum() == 0 and maps[0, :, :, :, k:].abs().sum() == 0
        if name == "rollout":
            R = plain_rollout(hf_A.double())
            torch.testing.assert_close(maps[1].double(), R / R.sum(-1, keepdim=True), atol=1e-6, rtol=1e-6)


def plain_rollout(A: torch.Tensor) -> torch.Tensor:
    """Rollout per head, written out: ``A^{l,h} R^{l-1}``, ``R^l = (mean_h A^l / 2 + I / 2) R^{l-1}``."""
    L, H, n, _ = A.shape
    R = torch.eye(n, dtype=A.dtype)
    out = []
    for layer in range(L):
        out.append(torch.stack([A[layer, h] @ R for h in range(H)]))
        R = (0.5 * A[layer].mean(0) + 0.5 * torch.eye(n, dtype=A.dtype)) @ R
    return torch.stack(out)


def test_load_encoder_detects_each_family(family_model, tmp_path):
    """A saved folder of each family loads through load_encoder (MiniLM's tokenizer beside it)."""
    kind, model = family_model
    from transformers import AutoTokenizer

    from bertstory.models import minilm_path

    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path)
    enc = load_encoder(str(tmp_path), name=kind, dtype="float64")
    assert enc.family.name == kind
    assert enc.info()["layers"] == family_of(model).L


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    import transformers as t

    t.GPT2Model(t.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=V)).save_pretrained(tmp_path)
    with pytest.raises(BertstoryError) as e:
        load_encoder(str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "'gpt2'" in msg
    for name in KINDS:
        assert name in msg
