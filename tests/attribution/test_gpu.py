"""CUDA paths of the attribution methods (``@pytest.mark.gpu``: skipped without a GPU; run by
``benchmarks/gpu_check.sh``). References are the same methods on the CPU in float64."""

from __future__ import annotations

import pytest
import torch

from bertstory.attribution import normalise_rows
from bertstory.attribution.exact import Exact
from bertstory.attribution.precision import resolve_dtype
from bertstory.attribution.sketch import Sketch
from bertstory.stats.formulas import js_bits
from tests.conftest import TINY

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tiny64():
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY, dtype="float64")


def segment(tokenizer):
    e = tokenizer("The cat sat on the mat.", "It purred loudly.")
    return torch.tensor([e["input_ids"]]), torch.tensor([e["token_type_ids"]])


@pytest.mark.parametrize("method", [Exact, lambda **kw: Sketch(probes=32, probes_kind="orthogonal", **kw),
                                    lambda **kw: Sketch(probes=8, **kw)])
def test_cuda_float64_equals_cpu(tiny64, method):
    ids, tt = segment(tiny64.tokenizer)
    ref = method(dtype="float64").scores(tiny64.model, ids, tt)
    model = tiny64.model.to("cuda")
    try:
        got = method(dtype="float64").scores(model, ids.cuda(), tt.cuda()).cpu()
    finally:
        tiny64.model.to("cpu")
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-10)


def test_auto_is_bfloat16_on_a_cuda_gpu_with_bf16():
    expected = "bfloat16" if torch.cuda.is_bf16_supported(including_emulation=False) else "float32"
    assert resolve_dtype("auto", "cuda") == expected


@pytest.mark.parametrize("dtype", ["bfloat16", "tf32"])
def test_reduced_precision_close_to_float32_on_minilm(minilm, dtype):
    e = minilm.tokenizer("Anarchism is a political philosophy and movement.")
    ids, tt = torch.tensor([e["input_ids"]]).cuda(), torch.tensor([e["token_type_ids"]]).cuda()
    model = minilm.model.to("cuda")
    try:
        ref = normalise_rows(Exact(dtype="float32").scores(model, ids, tt).double())[0]
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        got = normalise_rows(Exact(dtype="float32" if dtype == "tf32" else dtype)
                             .scores(model, ids, tt).double())[0]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
        minilm.model.to("cpu")
    assert js_bits(ref, got).mean().item() < 1e-4
    assert (ref - got).abs().max().item() < 0.02
