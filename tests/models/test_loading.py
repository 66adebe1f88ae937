"""Tests of bertstory.models against what the Hugging Face modules return themselves.

Every reference here comes from a plain ``model(...)`` call (``output_attentions`` /
``output_hidden_states``) or from forward hooks on the Hugging Face modules, never from
bertstory's own forward pieces.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bertstory.errors import BertstoryError  # noqa: E402
from bertstory.models import (  # noqa: E402
    attention_maps,
    embed,
    embeddings_from_words,
    head_outputs,
    load_encoder,
    minilm_path,
)
from tests.conftest import TINY, hf_head_outputs, hf_inputs, make_method  # noqa: E402

SENTENCES = [
    ("The cat sat on the mat.", None),
    ("Hi!", None),
    ("Attention is not explanation, they said.", "Is it, though?"),
]


# --------------------------------------------------------------------------- fixtures and references


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tiny64):
    """The shared float64 tiny model (conftest)."""
    return tiny64


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


def padded_batch(tokenizer, sentences=SENTENCES):
    firsts = [a for a, _ in sentences]
    seconds = [b or "" for _, b in sentences]
    # a pair only where a second text is given: tokenise one by one, then pad on the right
    encs = [tokenizer(a, b) if b else tokenizer(a) for a, b in zip(firsts, seconds, strict=True)]
    n = max(len(e["input_ids"]) for e in encs)
    B = len(encs)
    ids = torch.full((B, n), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(B, n, dtype=torch.long)
    tt = torch.zeros(B, n, dtype=torch.long)
    for b, e in enumerate(encs):
        k = len(e["input_ids"])
        ids[b, :k] = torch.tensor(e["input_ids"])
        mask[b, :k] = 1
        tt[b, :k] = torch.tensor(e["token_type_ids"])
    assert len({int(m.sum()) for m in mask}) == B, "segments must have different lengths"
    return ids, mask, tt


def hf_forward(model, ids, mask, tt):
    """Attentions, hidden states and per-layer self-attention outputs (captured with hooks) from HF itself."""
    captured = []
    hooks = [
        layer.attention.self.register_forward_hook(lambda _m, _i, out: captured.append(out[0].detach()))
        for layer in model.encoder.layer
    ]
    try:
        with torch.no_grad():
            out = model(
                input_ids=ids, attention_mask=mask, token_type_ids=tt, output_attentions=True, output_hidden_states=True
            )
    finally:
        for h in hooks:
            h.remove()
    return out, captured


def per_head(context, heads):
    """(B, n, H*d_h) -> list over heads of (B, n, d_h), by explicit slicing."""
    dh = context.shape[-1] // heads
    return [context[..., h * dh : (h + 1) * dh] for h in range(heads)]


def projected_by_masking(layer, context, heads):
    """``o_h W_O^h`` per head: the output dense layer on the context with every other head zeroed, minus bias."""
    dense = layer.attention.output.dense
    dh = context.shape[-1] // heads
    outs = []
    for h in range(heads):
        only = torch.zeros_like(context)
        only[..., h * dh : (h + 1) * dh] = context[..., h * dh : (h + 1) * dh]
        outs.append(dense(only) - dense.bias)
    return outs


def tols(model):
    return (1e-10, 1e-10) if next(model.parameters()).dtype == torch.float64 else (2e-6, 1e-5)


def check_attention_maps(enc):
    model = enc.model
    ids, mask, tt = padded_batch(enc.tokenizer)
    out, _ = hf_forward(model, ids, mask, tt)
    A = attention_maps(model, ids, mask, tt)
    B, n = ids.shape
    assert A.shape == (B, enc.layers, enc.heads, n, n)
    atol, rtol = tols(model)
    for b in range(B):
        k = int(mask[b].sum())
        for l in range(enc.layers):
            ref = out.attentions[l][b]  # (H, n, n)
            torch.testing.assert_close(A[b, l, :, :k, :k], ref[:, :k, :k], atol=atol, rtol=rtol)
            if k < n:
                # padding query rows and padding keys are zero
                assert A[b, l, :, k:, :].abs().max().item() == 0
                assert A[b, l, :, :, k:].abs().max().item() == 0
                # HF gives (numerically) no weight to padding keys either
                assert ref[:, :k, k:].abs().max().item() < 1e-12
            torch.testing.assert_close(
                A[b, l, :, :k, :k].sum(-1), torch.ones(enc.heads, k, dtype=A.dtype), atol=1e-5, rtol=0
            )


# --------------------------------------------------------------------------- attention maps, embeddings, heads


def test_tiny_info_and_eval(tiny):
    assert tiny.info() == {"name": "tiny", "layers": 2, "heads": 4, "hidden": 32}
    assert not tiny.model.training
    assert all(p.dtype == torch.float64 and not p.requires_grad for p in tiny.model.parameters())
    assert tiny.model.config._attn_implementation == "eager"


def test_tiny_is_seeded():
    a = load_encoder("minilm", random_init=True, seed=0, config_overrides=TINY)
    b = load_encoder("minilm", random_init=True, seed=0, config_overrides=TINY)
    c = load_encoder("minilm", random_init=True, seed=1, config_overrides=TINY)
    pa, pb, pc = (dict(e.model.named_parameters()) for e in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)


def test_minilm_info(minilm):
    assert minilm.info() == {"name": "minilm", "layers": 6, "heads": 12, "hidden": 384}
    assert minilm.model.config._attn_implementation == "eager"
    assert not minilm.model.training


def test_attention_maps_match_hf_tiny(tiny):
    check_attention_maps(tiny)


def test_attention_maps_match_hf_minilm(minilm):
    check_attention_maps(minilm)


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_embed_is_hidden_states_0(which, request):
    enc = request.getfixturevalue(which)
    model = enc.model
    ids, mask, tt = padded_batch(enc.tokenizer)
    out, _ = hf_forward(model, ids, mask, tt)
    x, w = embed(model, ids, tt)
    atol, rtol = tols(model)
    torch.testing.assert_close(x, out.hidden_states[0], atol=atol, rtol=rtol)
    torch.testing.assert_close(w, model.embeddings.word_embeddings.weight[ids], atol=0, rtol=0)
    torch.testing.assert_close(embeddings_from_words(model, w, ids, tt), x, atol=atol, rtol=rtol)
    # token types matter (the third segment is a pair): the default all-zero types give something else
    x0, _ = embed(model, ids)
    assert not torch.allclose(x0[2], x[2])
    torch.testing.assert_close(x0[0], x[0])


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_head_outputs_match_hf_self_attention(which, request):
    enc = request.getfixturevalue(which)
    model, H = enc.model, enc.heads
    ids, mask, tt = padded_batch(enc.tokenizer)
    out, contexts = hf_forward(model, ids, mask, tt)
    x, _ = embed(model, ids, tt)
    atol, rtol = tols(model)
    with torch.no_grad():
        o, A = head_outputs(model, x, mask, "context")
        op, Ap = head_outputs(model, x, mask, "projected")
    B, n = ids.shape
    dh = enc.hidden // H
    assert o.shape == (B, enc.layers, H, n, dh)
    assert op.shape == (B, enc.layers, H, n, enc.hidden)
    torch.testing.assert_close(A, Ap)
    for l, layer in enumerate(model.encoder.layer):
        heads = per_head(contexts[l], H)
        with torch.no_grad():
            proj = projected_by_masking(layer, contexts[l], H)
        q = mask.bool()[:, None, :, None]  # compare on non-padding query rows
        ref_o, ref_p = torch.stack(heads, 1), torch.stack(proj, 1)  # (B, H, n, .)
        torch.testing.assert_close(o[:, l] * q, ref_o * q, atol=atol, rtol=rtol)
        torch.testing.assert_close(op[:, l] * q, ref_p * q, atol=atol, rtol=rtol)
        qk = q * mask.bool()[:, None, None, :]
        torch.testing.assert_close(A[:, l] * qk, out.attentions[l] * qk, atol=atol, rtol=rtol)
        # the projected heads add up to the output projection of the whole context (minus its bias)
        with torch.no_grad():
            full = layer.attention.output.dense(contexts[l]) - layer.attention.output.dense.bias
        torch.testing.assert_close(op[:, l].sum(1), full, atol=atol * 10, rtol=rtol * 10)


# --------------------------------------------------------------------------- errors


def test_gpt2_layout_is_rejected(tiny, tmp_path):
    import transformers

    model = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(BertstoryError, match="not a supported encoder"):
        load_encoder(str(tmp_path))


def test_decoder_is_rejected(tiny, tmp_path):
    import transformers

    config = transformers.BertConfig(is_decoder=True, vocab_size=tiny.tokenizer.vocab_size, **TINY)
    transformers.BertModel(config).save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(BertstoryError, match="decoder"):
        load_encoder(str(tmp_path))


def test_unknown_path_is_rejected(tmp_path):
    with pytest.raises(BertstoryError):
        load_encoder(str(tmp_path / "no-such-model"))
    with pytest.raises(BertstoryError):
        load_encoder(str(tmp_path))  # exists, but holds no model


def test_no_attention_weights_is_an_error():
    enc = load_encoder("minilm", random_init=True, seed=0, config_overrides=TINY)
    enc.model.config._attn_implementation = "sdpa"  # SDPA returns no attention weights
    ids, mask, tt = padded_batch(enc.tokenizer)
    with pytest.raises(BertstoryError, match="eager"):
        attention_maps(enc.model, ids, mask, tt)


def test_task_head_is_stripped(tiny, tmp_path):
    import transformers

    config = transformers.BertConfig(vocab_size=tiny.tokenizer.vocab_size, num_labels=3, **TINY)
    torch.manual_seed(0)
    full = transformers.BertForSequenceClassification(config)
    full.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    enc = load_encoder(str(tmp_path), name="clf")
    assert type(enc.model).__name__ == "BertModel"
    assert enc.info() == {"name": "clf", "layers": 2, "heads": 4, "hidden": 32}
    torch.testing.assert_close(enc.model.embeddings.word_embeddings.weight, full.bert.embeddings.word_embeddings.weight)


# --------------------------------------------------------------------------- other encoders with BERT's layout


def brute_force_exact(model, ids, tt, wrt):
    """``||d o_i / d inp_j||_F`` from ``torch.autograd.functional.jacobian`` of a hooked HF forward pass."""
    n = ids.shape[1]
    inp = hf_inputs(model, ids, tt, wrt)
    f = hf_head_outputs(model, ids, tt, wrt, "context")

    J = torch.autograd.functional.jacobian(f, inp, vectorize=True, strategy="forward-mode")
    assert J.shape[-2:] == (n, inp.shape[-1])
    return J.pow(2).sum((3, 5)).sqrt()  # (L, H, n, n)


def save_random(tmp_path, kind, tokenizer):
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, **TINY)
    if kind == "roberta":
        model = transformers.RobertaModel(transformers.RobertaConfig(type_vocab_size=1, **common))
    else:
        model = transformers.ElectraModel(transformers.ElectraConfig(embedding_size=16, **common))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return str(tmp_path)


@pytest.fixture(scope="module", params=["roberta", "electra"])
def other_layout(request, tiny, tmp_path_factory):
    kind = request.param
    enc = load_encoder(save_random(tmp_path_factory.mktemp(kind), kind, tiny.tokenizer), name=kind, dtype="float64")
    assert type(enc.model).__name__ == {"roberta": "RobertaModel", "electra": "ElectraModel"}[kind]
    if kind == "electra":
        assert hasattr(enc.model, "embeddings_project")  # the projection 16 -> 32 is part of x
    return enc


LAYOUT_TEXT = "A small test, for layouts."


def test_other_layouts_forward(other_layout):
    model = other_layout.model
    ids = torch.tensor([other_layout.tokenizer(LAYOUT_TEXT)["input_ids"]])
    tt, mask = torch.zeros_like(ids), torch.ones_like(ids)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    # hidden_states[0] (after ELECTRA's projection) and HF's own attention maps
    x, _ = embed(model, ids, tt)
    torch.testing.assert_close(x, out.hidden_states[0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(attention_maps(model, ids, mask, tt)[0], torch.stack(out.attentions, 1)[0])


@pytest.mark.parametrize("wrt", ["embeddings", "word"])
def test_other_layouts_exact(other_layout, wrt):
    """exact equals brute force on RoBERTa and ELECTRA (whose word vectors are 16-dimensional, x 32)."""
    model = other_layout.model
    ids = torch.tensor([other_layout.tokenizer(LAYOUT_TEXT)["input_ids"]])
    tt = torch.zeros_like(ids)
    ref = brute_force_exact(model, ids, tt, wrt)
    got = make_method("exact", wrt=wrt, dtype="float64").scores(model, ids, tt)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_bert_base_shape(tiny, tmp_path):
    """A random model of bert-base's shape loads from a folder (the ``bert_base`` path with a local copy)."""
    import transformers

    config = transformers.BertConfig(
        vocab_size=tiny.tokenizer.vocab_size,
        num_hidden_layers=12,
        num_attention_heads=12,
        hidden_size=768,
        intermediate_size=3072,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    enc = load_encoder(str(tmp_path), name="bert_base")
    assert enc.info() == {"name": "bert_base", "layers": 12, "heads": 12, "hidden": 768}
    check_attention_maps(enc)


def test_minilm_path_holds_a_model():
    assert os.path.isfile(os.path.join(minilm_path(), "config.json"))
