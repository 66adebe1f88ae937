"""Independent references for the tests: per-head outputs read from Hugging Face's own forward pass."""

import torch
import torch.nn.functional as F


def hf_inputs(model, ids, tt, wrt, mask=None):
    """The vectors attributed to (1 segment): x = hidden_states[0] or the word-embedding lookup, (n, d_in)."""
    mask = torch.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)
    return out.hidden_states[0][0] if wrt == "embeddings" else model.embeddings.word_embeddings(ids)[0]


def hf_head_outputs(model, ids, tt, wrt, head_output, mask=None):
    """A function z (n, d_in) -> head outputs (L, H, n, k) computed by HF's own forward pass with hooks."""
    mask = torch.ones_like(ids) if mask is None else mask
    H = model.config.num_attention_heads
    d = model.config.hidden_size
    dh = d // H

    def f(z):
        captured = []
        if wrt == "embeddings":

            def replace(_m, args, kwargs):
                return (z[None], *args[1:]), kwargs

            hooks = [model.encoder.register_forward_pre_hook(replace, with_kwargs=True)]
        else:
            hooks = [model.embeddings.word_embeddings.register_forward_hook(lambda _m, _i, _o: z[None])]
        hooks += [
            layer.attention.self.register_forward_hook(lambda _m, _i, o: captured.append(o[0][0]))
            for layer in model.encoder.layer
        ]
        try:
            model(input_ids=ids, attention_mask=mask, token_type_ids=tt)
        finally:
            for h in hooks:
                h.remove()
        layers = []
        for layer, c in zip(model.encoder.layer, captured, strict=True):  # c (n, d): heads concatenated
            heads = [c[:, h * dh : (h + 1) * dh] for h in range(H)]
            if head_output == "projected":  # o_h W_O^h: the output dense on this head alone, minus the bias
                dense = layer.attention.output.dense
                heads = [dense(F.pad(o, (h * dh, d - (h + 1) * dh))) - dense.bias for h, o in enumerate(heads)]
            layers.append(torch.stack(heads))
        return torch.stack(layers)

    return f
