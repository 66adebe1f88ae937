"""``attribution.memory_mb``: the plan fits the budget, the engine keeps maps first, and every split is exact."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from bertstory.attribution.engine import fold_scores, held_layers
from bertstory.attribution.exact import Exact
from bertstory.attribution.memory import CPU_ROWS, chunk_bytes, fixed_bytes, held_bytes, plan_memory
from bertstory.attribution.sketch import Sketch
from bertstory.models import load_encoder

BASE = BertConfig(num_hidden_layers=12, num_attention_heads=12, hidden_size=768, intermediate_size=3072)
TINY3 = dict(num_hidden_layers=3, num_attention_heads=4, hidden_size=32, intermediate_size=64)


@pytest.mark.parametrize("n", [32, 128, 512])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_plan_fits_the_budget(n, device):
    for memory_mb in (1024, 4096, 16384):
        plan = plan_memory(n, BASE, torch.float32, memory_mb, device)
        per = chunk_bytes(n, 768, 12, 3072, 4, fold_scores(12, n, 768))
        used = fixed_bytes(n, BASE, 4) + plan.held_bytes + plan.chunk * per
        assert used <= memory_mb * 2**20 or plan.chunk == 1
        assert plan.held_bytes <= held_bytes(n, BASE, 4)
        if device == "cpu":
            assert plan.chunk <= max(1, CPU_ROWS // n)


def test_held_layers_take_maps_first():
    L, n, d = 4, 4, 16
    m, v = n * d * d * 4, n * n * d * 4
    assert held_layers(L, n, d, 4, None) == (L - 1, L)
    assert held_layers(L, n, d, 4, 0) == (0, 0)
    assert held_layers(L, n, d, 4, 2 * m + v) == (2, 1)
    assert held_layers(L, n, d, 4, 3 * m + 4 * v) == (3, 4)


@pytest.mark.parametrize("budget", ["maps_and_some_values", "some_values"])
def test_partial_budgets_are_exact(monkeypatch, budget):
    enc = load_encoder("minilm", name="tiny3", random_init=True, seed=1, config_overrides=TINY3, dtype="float64")
    e = enc.tokenizer("The cat sat on the mat.", "It purred.")
    ids, tt = torch.tensor([e["input_ids"]]), torch.tensor([e["token_type_ids"]])
    n, d = ids.shape[1], 32
    nbytes = {"maps_and_some_values": 2 * n * d * d * 8 + n * n * d * 8, "some_values": 2 * n * n * d * 8}[budget]
    for cls, kw in ((Exact, {}), (Sketch, dict(probes=5, probes_kind="orthogonal"))):
        ref = cls(engine="jvp", dtype="float64", **kw).scores(enc.model, ids, tt)
        monkeypatch.setattr(cls, "map_budget", lambda self, plan, b=nbytes: b)
        got = cls(dtype="float64", chunk_size=7, **kw).scores(enc.model, ids, tt)
        monkeypatch.undo()
        assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-10
