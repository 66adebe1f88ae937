"""The real all-MPNet-base-v2 (the mpnet extra): attention statistics of a run equal the model's own attentions,
and ``exact`` on a short segment equals a brute-force Jacobian of the hooked HF modules."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from bertstory.errors import BertstoryError
from tests.conftest import analyze, make_method, shard_maps
from tests.models.test_families import hf_head_outputs


def mpnet_or_skip(dtype: str = "float32"):
    from bertstory.models import load_encoder

    try:
        return load_encoder("mpnet", dtype=dtype)
    except BertstoryError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the mpnet extra is not installed")


CORPUS = "The cat sat on the mat.\nA dog, barking loudly, ran away!\nIs this the real life?\n"


@pytest.mark.slow
def test_attention_statistics_match_the_models_own_attentions(tmp_path):
    enc = mpnet_or_skip()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    out = tmp_path / "run"
    r = analyze("model=mpnet", "attribution=none", "logger=none", "data=text", f"data.path={corpus}",
                f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == {"name": "all-mpnet-base-v2", "layers": 12, "heads": 12, "hidden": 768}
    segments = shard_maps(out)
    assert len(segments) == 3
    cls, sep = enc.tokenizer.cls_token_id, enc.tokenizer.sep_token_id
    sums = {k: torch.zeros(12, 12, dtype=torch.float64) for k in ("cls", "sep", "self", "prev", "next", "entropy")}
    queries = 0
    for seg in segments.values():
        ids = seg["input_ids"][None]
        with torch.no_grad():
            A = torch.stack(enc.model(input_ids=ids, output_attentions=True).attentions, 1)[0].double()  # (L,H,n,n)
        n = ids.shape[1]
        queries += n
        sums["cls"] += A[..., ids[0] == cls].sum((-1, -2))
        sums["sep"] += A[..., ids[0] == sep].sum((-1, -2))
        sums["self"] += A.diagonal(dim1=-2, dim2=-1).sum(-1)
        sums["prev"] += A.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1)
        sums["next"] += A.diagonal(offset=1, dim1=-2, dim2=-1).sum(-1)
        sums["entropy"] += -(A * torch.log2(A.clamp_min(1e-300))).sum((-1, -2))
    assert queries == m["data"]["tokens"]
    for key, total in sums.items():
        got = torch.tensor(m["attention"]["entropy"] if key == "entropy" else m["attention"]["patterns"][key])
        torch.testing.assert_close(got.double(), total / queries, atol=2e-5, rtol=1e-4, msg=key)


@pytest.mark.slow
def test_exact_on_a_short_segment_matches_brute_force():
    enc = mpnet_or_skip("float64")
    model = enc.model
    ids = torch.tensor([enc.tokenizer("Hi there!")["input_ids"]])
    n, d = ids.shape[1], 768
    assert n <= 6
    f = hf_head_outputs(model, "mpnet", ids, "embeddings")
    with torch.no_grad():
        x = model(input_ids=ids, output_hidden_states=True).hidden_states[0][0]
    sq = torch.zeros(12, 12, n, n, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    for j in range(n):  # the Jacobian's columns of token j: d one-hot tangents, in blocks
        for start in range(0, d, 256):
            tangents = torch.zeros(256, n, d, dtype=torch.float64)
            tangents[:, j] = eye[start : start + 256]
            cols = torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,))[1])(tangents)  # (256, L, H, n, d_h)
            sq[..., j] += cols.pow(2).sum((0, -1))
    ref = sq.sqrt()
    got = make_method("exact", dtype="float64").scores(model, ids, torch.zeros_like(ids))
    torch.testing.assert_close(got, ref, atol=1e-6 * ref.max().item(), rtol=1e-6)
    assert math.isfinite(got.sum().item())
