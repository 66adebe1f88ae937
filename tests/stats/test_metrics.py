"""Statistics against hand-derived values and an independent plain-Python reference (loops, scipy)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
import torch
from torchmetrics.utilities.data import dim_zero_sum

from bertstory.stats.collection import AnalysisMetrics
from bertstory.stats.metrics import Discrepancy, PatternMass, RowEntropy, SelfAttribution, UniformMass
from bertstory.stats.patterns import PATTERNS, pattern_masks
from bertstory.stats.persistence import persistence

CLS, SEP, PUNCT_IDS, VOCAB = 1, 2, (7, 8), 20
L, H = 2, 3
Segment = tuple[list[int], np.ndarray, np.ndarray]  # ids (n), attention (L,H,n,n), attribution (L,H,n,n)


# --------------------------------------------------------------------------- building batches


def punct_vocab() -> torch.Tensor:
    vocab = torch.zeros(VOCAB, dtype=torch.bool)
    vocab[list(PUNCT_IDS)] = True
    return vocab


def make_batch(segments: list[Segment], width: int | None = None, dtype=torch.float32):
    """Right-pad segments into (att, attr (B,L,H,w,w), attention_mask (B,w), masks)."""
    width = width or max(len(ids) for ids, _, _ in segments)
    layers, heads = segments[0][1].shape[:2]
    ids_t = torch.zeros(len(segments), width, dtype=torch.long)
    mask = torch.zeros(len(segments), width, dtype=torch.long)
    att = torch.zeros(len(segments), layers, heads, width, width, dtype=dtype)
    attr = torch.zeros_like(att)
    for b, (ids, a, r) in enumerate(segments):
        n = len(ids)
        ids_t[b, :n] = torch.tensor(ids)
        mask[b, :n] = 1
        att[b, :, :, :n, :n] = torch.from_numpy(a).to(dtype)
        attr[b, :, :, :n, :n] = torch.from_numpy(r).to(dtype)
    return att, attr, mask, pattern_masks(ids_t, mask, CLS, SEP, punct_vocab())


def run(segments: list[Segment], batch_size: int | None = None, extra: int = 0) -> AnalysisMetrics:
    layers, heads = segments[0][1].shape[:2]
    metrics = AnalysisMetrics(layers, heads, with_attribution=True)
    batch_size = batch_size or len(segments)
    for start in range(0, len(segments), batch_size):
        chunk = segments[start : start + batch_size]
        att, attr, mask, masks = make_batch(chunk, max(len(s[0]) for s in chunk) + extra)
        metrics.update(att, attr, mask, masks)
    return metrics


def normalise(w: np.ndarray) -> np.ndarray:
    return (w / w.sum(axis=-1, keepdims=True)).astype(np.float32)


def random_segment(rng: np.random.Generator, n: int, layers: int = L, heads: int = H) -> Segment:
    """Continuous attention; attribution with many ties and zeros, and one constant row."""
    middle = rng.choice([3, 4, 5, 7, 8, SEP], size=max(n - 2, 0)).tolist()
    ids = ([CLS] + middle + [SEP])[:n]
    att = normalise(rng.random((layers, heads, n, n)) ** 3 + 1e-3)
    weights = rng.integers(0, 4, size=(layers, heads, n, n)).astype(np.float64)
    weights[..., 0] += weights.sum(axis=-1) == 0
    weights[0, 0, n // 2, :] = 1.0
    return ids, att, normalise(weights)


def one_head(rows: list[list[float]], n: int | None = None) -> torch.Tensor:
    """A (1,1,1,n,n) tensor from hand-written rows, zero-padded to n keys/queries."""
    k = len(rows)
    n = n or k
    out = torch.zeros(1, 1, 1, n, n, dtype=torch.float64)
    out[0, 0, 0, :k, :k] = torch.tensor(rows, dtype=torch.float64)
    return out


def lengths_mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[1] * n + [0] * (width - n) for n in lengths])


def discrepancy_of(att: torch.Tensor, attr: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    metric = Discrepancy(att.shape[1], att.shape[2])
    metric.update(att, attr, mask)
    return metric.compute()


# --------------------------------------------------------------------------- plain-Python reference


def ref_key_sets(ids: list[int]) -> dict[str, list[set[int]]]:
    n = len(ids)
    cls = {j for j in range(n) if ids[j] == CLS}
    sep = {j for j in range(n) if ids[j] == SEP}
    punct = {j for j in range(n) if ids[j] in PUNCT_IDS}
    return {
        "cls": [cls] * n,
        "sep": [sep] * n,
        "punct": [punct] * n,
        "self": [{i} for i in range(n)],
        "prev": [{i - 1} if i >= 1 else set() for i in range(n)],
        "next": [{i + 1} if i + 1 < n else set() for i in range(n)],
    }


def ref_entropy(p: list[float]) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)


def ref_js(p: list[float], q: list[float]) -> float:
    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]

    def kl(x: list[float]) -> float:
        return sum(xi * math.log2(xi / mi) for xi, mi in zip(x, m, strict=True) if xi > 0)

    return 0.5 * kl(p) + 0.5 * kl(q)


def ref_argmax(p: list[float]) -> int:
    best = 0
    for j in range(1, len(p)):
        if p[j] > p[best]:
            best = j
    return best


def reference(segments: list[Segment]) -> dict[str, Any]:
    """Every statistic by looping over segments, queries, layers and heads."""
    stats = pytest.importorskip("scipy.stats")
    layers, heads = segments[0][1].shape[:2]
    sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros((layers, heads)))
    queries = 0
    for ids, att, attr in segments:
        n = len(ids)
        keys = ref_key_sets(ids)
        for i in range(n):
            queries += 1
            for l in range(layers):
                for h in range(heads):
                    A = [float(x) for x in att[l, h, i]]
                    a = [float(x) for x in attr[l, h, i]]
                    for p in PATTERNS:
                        sums[f"att_{p}"][l, h] += sum(A[j] for j in keys[p][i])
                        sums[f"attr_{p}"][l, h] += sum(a[j] for j in keys[p][i])
                        sums[f"uniform_{p}"][l, h] += len(keys[p][i]) / n
                    sums["att_entropy"][l, h] += ref_entropy(A)
                    sums["attr_entropy"][l, h] += ref_entropy(a)
                    sums["self"][l, h] += a[i]
                    sums["self_top1"][l, h] += ref_argmax(a) == i
                    sums["js"][l, h] += ref_js(A, a)
                    sums["tv"][l, h] += 0.5 * sum(abs(x - y) for x, y in zip(A, a, strict=True))
                    sums["top1"][l, h] += ref_argmax(A) == ref_argmax(a)
                    if n >= 3:
                        if len(set(A)) == 1 or len(set(a)) == 1:
                            sums["spearman_undefined"][l, h] += 1
                        else:
                            sums["spearman_sum"][l, h] += stats.spearmanr(A, a).statistic
                            sums["spearman_count"][l, h] += 1
    means = {k: v / queries for k, v in sums.items()}
    means["spearman"] = sums["spearman_sum"] / sums["spearman_count"]
    means["spearman_undefined"] = sums["spearman_undefined"]
    means["queries"] = queries
    return means


def assert_close(x: Any, y: Any, tol: float = 1e-12, where: str = "") -> None:
    """Recursive comparison of JSON-like blocks (dicts, lists, floats, None, bools)."""
    if isinstance(x, dict):
        assert isinstance(y, dict) and list(x) == list(y), where
        for k in x:
            assert_close(x[k], y[k], tol, f"{where}.{k}")
    elif isinstance(x, (list, tuple, np.ndarray)):
        assert len(x) == len(y), where
        for k, (a, b) in enumerate(zip(x, y, strict=True)):
            assert_close(a, b, tol, f"{where}[{k}]")
    elif x is None or isinstance(x, bool):
        assert x == y, where
    else:
        assert y is not None and abs(float(x) - float(y)) <= tol, f"{where}: {x} != {y}"


# --------------------------------------------------------------------------- hand-made distributions


def test_identical_rows() -> None:
    rows = [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.05, 0.6, 0.25, 0.1], [0.7, 0.1, 0.15, 0.05]]
    d = discrepancy_of(one_head(rows), one_head(rows), lengths_mask([4], 4))
    assert abs(d["js"].item()) < 1e-15
    assert d["tv"].item() == 0.0
    assert d["top1"].item() == 1.0
    assert d["spearman"].item() == pytest.approx(1.0, abs=1e-12)
    assert d["spearman_undefined"].item() == 0.0


def test_disjoint_supports() -> None:
    att = [[0.3, 0.7, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]]
    attr = [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.2, 0.8], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.6, 0.4]]
    d = discrepancy_of(one_head(att), one_head(attr), lengths_mask([4], 4))
    assert d["js"].item() == pytest.approx(1.0, abs=1e-15)
    assert d["tv"].item() == pytest.approx(1.0, abs=1e-15)
    assert d["top1"].item() == 0.0


def test_reversed_rows_spearman_minus_one() -> None:
    up = [1 / 15, 2 / 15, 3 / 15, 4 / 15, 5 / 15]
    down = up[::-1]
    d = discrepancy_of(one_head([up] * 5), one_head([down] * 5), lengths_mask([5], 5))
    assert d["spearman"].item() == pytest.approx(-1.0, abs=1e-12)
    assert d["top1"].item() == 0.0  # argmax 4 against argmax 0


def test_spearman_ties_average_ranks() -> None:
    # ranks (0.1, 0.2, 0.2, 0.5) -> (1, 2.5, 2.5, 4); (0.4, 0.4, 0.1, 0.1) -> (3.5, 3.5, 1.5, 1.5)
    # centred: (-1.5, 0, 0, 1.5) and (1, 1, -1, -1): cov -3, variances 4.5 and 4: rho = -3/sqrt(18)
    att = [[0.1, 0.2, 0.2, 0.5]] * 4
    attr = [[0.4, 0.4, 0.1, 0.1]] * 4
    d = discrepancy_of(one_head(att, n=6), one_head(attr, n=6), lengths_mask([4], 6))
    assert d["spearman"].item() == pytest.approx(-1 / math.sqrt(2), abs=1e-12)
    stats = pytest.importorskip("scipy.stats")
    assert d["spearman"].item() == pytest.approx(stats.spearmanr(att[0], attr[0]).statistic, abs=1e-12)
    # first index on ties: argmax 3 against argmax 0
    assert d["top1"].item() == 0.0


def test_spearman_random_rows_with_ties_and_padding_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    lengths, width = [3, 7, 5], 9
    att = torch.zeros(3, 1, 2, width, width, dtype=torch.float64)
    attr = torch.zeros_like(att)
    expected = np.zeros((1, 2))
    count = 0
    for b, n in enumerate(lengths):
        x = rng.integers(1, 4, size=(2, n, n)).astype(np.float64)
        y = rng.integers(0, 3, size=(2, n, n)).astype(np.float64) + rng.random((2, n, n)).round(1)
        x[:, :, 0] += 0.5  # keeps rows non-constant
        y[:, :, 0] += 0.25
        att[b, 0, :, :n, :n] = torch.from_numpy(x / x.sum(-1, keepdims=True))
        attr[b, 0, :, :n, :n] = torch.from_numpy(y / y.sum(-1, keepdims=True))
        for h in range(2):
            for i in range(n):
                expected[0, h] += stats.spearmanr(att[b, 0, h, i, :n], attr[b, 0, h, i, :n]).statistic
        count += n
    d = discrepancy_of(att, attr, lengths_mask(lengths, width))
    np.testing.assert_allclose(d["spearman"].numpy(), expected / count, atol=1e-12)


def test_constant_row_is_undefined_and_excluded() -> None:
    att = [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]
    attr = [[0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]]
    d = discrepancy_of(one_head(att), one_head(attr), lengths_mask([4], 4))
    assert d["spearman_undefined"].item() == 1.0
    assert d["spearman"].item() == pytest.approx((1.0 - 1.0 + 1.0) / 3, abs=1e-12)
    # argmax pairs (3, 0 first on ties), (0, 0), (3, 0), (0, 0): 2 of 4 agree
    assert d["top1"].item() == 0.5


def test_short_segments_have_no_spearman() -> None:
    att = one_head([[0.6, 0.4], [0.3, 0.7]], n=3)
    attr = one_head([[0.2, 0.8], [0.9, 0.1]], n=3)
    d = discrepancy_of(att, attr, lengths_mask([2], 3))
    assert math.isnan(d["spearman"].item())
    assert d["spearman_undefined"].item() == 0.0
    assert d["tv"].item() == pytest.approx((0.4 + 0.6) / 2)


def test_entropy_uniform_and_one_hot() -> None:
    n, width = 5, 7
    uniform = one_head([[1 / n] * n] * n, n=width)
    one_hot = one_head([[1.0 if j == (i + 2) % n else 0.0 for j in range(n)] for i in range(n)], n=width)
    mask = lengths_mask([n], width)
    for dist, expected in ((uniform, math.log2(n)), (one_hot, 0.0)):
        metric = RowEntropy(1, 1)
        metric.update(dist, mask)
        assert metric.compute().item() == pytest.approx(expected, abs=1e-12)


def test_self_attribution_by_hand() -> None:
    # argmax: row 0 -> 0 (tie, first index) = self; row 1 -> 0 != 1; row 2 -> 2 = self
    rows = [[0.5, 0.5, 0.0], [0.6, 0.2, 0.2], [0.1, 0.2, 0.7]]
    metric = SelfAttribution(1, 1)
    metric.update(one_head(rows, n=4), lengths_mask([3], 4))
    out = metric.compute()
    assert out["self"].item() == pytest.approx((0.5 + 0.2 + 0.7) / 3, abs=1e-12)
    assert out["self_top1"].item() == pytest.approx(2 / 3, abs=1e-12)


def test_token_weighting() -> None:
    """Lengths 3 and 5: the mean over 8 queries, not the mean of two segment means."""
    width = 5
    dist = torch.zeros(2, 1, 1, width, width, dtype=torch.float64)
    dist[0, 0, 0, :3, :3] = 1 / 3  # uniform rows: entropy log2 3, self mass 1/3
    dist[1, 0, 0] = torch.eye(5, dtype=torch.float64)  # one-hot on self: entropy 0, self mass 1
    mask = lengths_mask([3, 5], width)
    entropy = RowEntropy(1, 1)
    entropy.update(dist, mask)
    assert entropy.compute().item() == pytest.approx(3 * math.log2(3) / 8, abs=1e-12)
    ids = torch.tensor([[CLS, 3, SEP, 0, 0], [CLS, 3, 4, 5, SEP]])
    masks = pattern_masks(ids, mask, CLS, SEP, punct_vocab())
    mass = PatternMass(1, 1)
    mass.update(dist, mask, masks)
    assert mass.compute()["self"].item() == pytest.approx((3 * (1 / 3) + 5 * 1.0) / 8, abs=1e-12)
    uniform = UniformMass(1, 1)
    uniform.update(mask, masks)
    assert uniform.compute()["self"].item() == pytest.approx((3 * (1 / 3) + 5 * (1 / 5)) / 8, abs=1e-12)
    # next: 2 of 3 queries have a next key in segment 0 (1/3 each), 4 of 5 in segment 1 (1/5 each)
    assert uniform.compute()["next"].item() == pytest.approx((2 / 3 + 4 / 5) / 8, abs=1e-12)


def test_padding_values_are_ignored() -> None:
    """Junk at padding keys and NaN in padding query rows change nothing."""
    rng = np.random.default_rng(1)
    segments = [random_segment(rng, n) for n in (3, 6)]
    att, attr, mask, masks = make_batch(segments, 8)
    clean = AnalysisMetrics(L, H, with_attribution=True)
    clean.update(att, attr, mask, masks)
    pad_keys = ~mask.bool()[:, None, None, None, :]
    pad_queries = ~mask.bool()[:, None, None, :, None]
    dirty_att = att.masked_fill(pad_keys, 5.0).masked_fill(pad_queries, math.nan)
    dirty_attr = attr.masked_fill(pad_keys, 7.0).masked_fill(pad_queries, math.nan)
    dirty = AnalysisMetrics(L, H, with_attribution=True)
    dirty.update(dirty_att, dirty_attr, mask, masks)
    assert_close(clean.compute_block(), dirty.compute_block(), tol=0.0)


# --------------------------------------------------------------------------- against the reference


def test_all_statistics_match_reference() -> None:
    rng = np.random.default_rng(2)
    segments = [random_segment(rng, n) for n in (1, 2, 3, 4, 6, 7, 5)]
    ref = reference(segments)
    metrics = run(segments, batch_size=3, extra=1)
    block = metrics.compute_block()
    assert metrics.queries == ref["queries"] == sum(len(s[0]) for s in segments)
    for p in PATTERNS:
        assert_close(block["attention"]["patterns"][p], ref[f"att_{p}"], where=f"att {p}")
        assert_close(block["attribution"]["patterns"][p], ref[f"attr_{p}"], where=f"attr {p}")
        assert_close(block["uniform"]["patterns"][p], ref[f"uniform_{p}"], where=f"uniform {p}")
    assert_close(block["attention"]["entropy"], ref["att_entropy"])
    assert_close(block["attribution"]["entropy"], ref["attr_entropy"])
    assert_close(block["attribution"]["self"], ref["self"])
    assert_close(block["attribution"]["self_top1"], ref["self_top1"])
    for k in ("js", "tv", "top1", "spearman"):
        assert_close(block["discrepancy"][k], ref[k], where=k)
    assert ref["spearman_undefined"][0, 0] >= 1  # the forced constant rows
    assert_close(metrics.spearman_undefined, ref["spearman_undefined"], tol=0.0)


def test_padding_batch_size_and_order_do_not_matter() -> None:
    rng = np.random.default_rng(3)
    segments = [random_segment(rng, n) for n in (4, 2, 7, 3, 5, 6)]
    together = run(segments, extra=3).compute_block()
    one_at_a_time = run(segments, batch_size=1).compute_block()
    reversed_pairs = run(segments[::-1], batch_size=2, extra=1).compute_block()
    assert_close(together, one_at_a_time, tol=1e-12)
    assert_close(together, reversed_pairs, tol=1e-12)


def test_low_precision_inputs_are_cast_to_float64() -> None:
    rng = np.random.default_rng(4)
    att, attr, mask, masks = make_batch([random_segment(rng, n) for n in (3, 5)])
    for dtype in (torch.float16, torch.bfloat16):
        low = AnalysisMetrics(L, H, with_attribution=True)
        low.update(att.to(dtype), attr.to(dtype), mask, masks)
        high = AnalysisMetrics(L, H, with_attribution=True)
        high.update(att.to(dtype).double(), attr.to(dtype).double(), mask, masks)
        assert_close(low.compute_block(), high.compute_block(), tol=0.0)
        assert low.discrepancy.js.dtype == torch.float64


def test_inputs_that_require_grad() -> None:
    rng = np.random.default_rng(5)
    att, attr, mask, masks = make_batch([random_segment(rng, 4)])
    metrics = AnalysisMetrics(L, H, with_attribution=True)
    metrics.update(att.requires_grad_(), attr.requires_grad_(), mask, masks)
    assert not metrics.discrepancy.js.requires_grad


def test_shape_mismatch_raises() -> None:
    metric = RowEntropy(2, 3)
    with pytest.raises(ValueError, match="expected a"):
        metric.update(torch.zeros(1, 3, 2, 4, 4), torch.ones(1, 4))


# --------------------------------------------------------------------------- persistence


def test_persistence_constructed_case() -> None:
    # lift per head = attr / uniform: cls [[3, 5], [1, 2]], self [[2.5, 2.5], [2, 3]], punct: uniform 0
    att = {
        "cls": torch.tensor([[0.6, 0.2], [0.1, 0.3]]),
        "self": torch.tensor([[0.5, 0.9], [0.7, 0.8]]),
        "punct": torch.zeros(2, 2),
    }
    attr = {
        "cls": torch.tensor([[0.75, 1.25], [0.25, 0.5]]),
        "self": torch.tensor([[0.3125, 0.3125], [0.25, 0.375]]),
        "punct": torch.zeros(2, 2),
    }
    uniform = {"cls": torch.full((2, 2), 0.25), "self": torch.full((2, 2), 0.125), "punct": torch.zeros(2, 2)}
    out = persistence(att, attr, uniform)
    assert out == {
        "tau": 0.5,
        "kappa": 2.0,
        "lift": {"cls": [4.0, 1.5], "self": [2.5, 2.5], "punct": [None, None]},
        "carried": {"cls": [3.0, None], "self": [2.5, 2.5], "punct": [None, None]},
        "persists": {"cls": False, "self": True, "punct": False},
    }
    json.dumps(out, allow_nan=False)
    stricter = persistence(att, attr, uniform, tau=0.75, kappa=1.5)
    assert stricter["carried"]["self"] == [2.5, 3.0]  # heads with 0.9 and 0.8
    assert stricter["carried"]["cls"] == [None, None]
    assert stricter["persists"] == {"cls": True, "self": True, "punct": False}
    assert (stricter["tau"], stricter["kappa"]) == (0.75, 1.5)


# --------------------------------------------------------------------------- distributed reduction


def test_states_are_float64_sums() -> None:
    metrics = AnalysisMetrics(L, H, with_attribution=True)
    for child in metrics.children():
        for name, reduce_fx in child._reductions.items():
            assert reduce_fx is dim_zero_sum, name
            assert getattr(child, name).dtype == torch.float64, name
            assert getattr(child, name).shape in ((L, H), ()), name


def test_merged_halves_equal_one_instance() -> None:
    """What DDP does: sum the states of per-process metrics."""
    rng = np.random.default_rng(6)
    segments = [random_segment(rng, n) for n in (5, 3, 6, 2, 4)]
    whole = run(segments)
    first, second = run(segments[:2]), run(segments[2:])
    for name, child in first.named_children():
        child.merge_state(getattr(second, name))
    assert_close(whole.compute_block(), first.compute_block(), tol=1e-12)
    # the same by adding the raw states by hand
    first, second = run(segments[:3]), run(segments[3:])
    for name, child in whole.named_children():
        for state in child._defaults:
            summed = getattr(getattr(first, name), state) + getattr(getattr(second, name), state)
            torch.testing.assert_close(getattr(child, state), summed, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- the container


def test_compute_block_schema() -> None:
    rng = np.random.default_rng(7)
    segments = [random_segment(rng, n) for n in (4, 6)]
    block = run(segments).compute_block()
    assert list(block) == ["attention", "attribution", "uniform", "discrepancy", "persistence"]
    assert list(block["attention"]) == ["patterns", "entropy"]
    assert list(block["attribution"]) == ["patterns", "entropy", "self", "self_top1"]
    assert list(block["uniform"]) == ["patterns"]
    assert list(block["discrepancy"]) == ["js", "tv", "top1", "spearman"]
    assert list(block["persistence"]) == ["tau", "kappa", "lift", "carried", "persists"]
    for group in ("attention", "attribution", "uniform"):
        assert list(block[group]["patterns"]) == list(PATTERNS)
    grids = [block["attention"]["entropy"], block["discrepancy"]["js"], block["uniform"]["patterns"]["cls"]]
    for values in grids:
        assert len(values) == L and all(len(row) == H for row in values)
        assert all(isinstance(v, float) for row in values for v in row)
    assert all(len(v) == L for v in block["persistence"]["lift"].values())
    json.dumps(block, allow_nan=False)


def test_attention_only() -> None:
    rng = np.random.default_rng(8)
    att, attr, mask, masks = make_batch([random_segment(rng, n) for n in (4, 6)])
    metrics = AnalysisMetrics(L, H, with_attribution=False)
    with pytest.raises(ValueError, match="with_attribution"):
        metrics.update(att, attr, mask, masks)
    metrics.update(att, None, mask, masks)
    block = metrics.compute_block()
    assert list(block) == ["attention", "uniform"]
    assert metrics.queries == 10
    with pytest.raises(ValueError, match="with_attribution"):
        AnalysisMetrics(L, H, with_attribution=True).update(att, None, mask, masks)


def test_reset() -> None:
    rng = np.random.default_rng(9)
    att, attr, mask, masks = make_batch([random_segment(rng, 4)])
    metrics = AnalysisMetrics(L, H, with_attribution=True).to("cpu")
    metrics.update(att, attr, mask, masks)
    metrics.reset()
    assert metrics.queries == 0


@pytest.mark.gpu
def test_statistics_on_cuda_equal_cpu() -> None:
    rng = np.random.default_rng(9)
    att, attr, mask, masks = make_batch([random_segment(rng, 4), random_segment(rng, 7)])
    moved = AnalysisMetrics(L, H, with_attribution=True).to("cuda")
    moved.update(att.cuda(), attr.cuda(), mask.cuda(), {p: m.cuda() for p, m in masks.items()})
    assert moved.discrepancy.js.device.type == "cuda"
    metrics = AnalysisMetrics(L, H, with_attribution=True)
    metrics.update(att, attr, mask, masks)
    assert_close(metrics.compute_block(), moved.compute_block(), tol=1e-12)
