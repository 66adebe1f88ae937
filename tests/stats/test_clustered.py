"""Segment-clustered standard errors against a direct computation from per-segment values, their
coverage in simulation, and the tests (p-values, Benjamini-Hochberg) the paired comparison uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bertstory.stats.clustered import (
    Z95,
    benjamini_hochberg,
    influence,
    influence_stderr,
    ratio_stderr,
    two_sided_p,
)
from bertstory.stats.metrics import PatternMass
from bertstory.stats.patterns import PATTERNS
from tests.stats.test_metrics import H, L, random_segment, reference, run

# --------------------------------------------------------------------------- plain Python


def direct_se(s: list[float], n: list[float]) -> float | None:
    """``sqrt(K/(K-1) sum_k (s_k - R n_k)^2) / sum_k n_k`` with ``R = sum s / sum n``, over all K segments."""
    pairs = list(zip(s, n, strict=True))
    k = len(pairs)
    total = sum(b for _, b in pairs)
    if k < 2 or total == 0:
        return None
    r = sum(a for a, _ in pairs) / total
    return math.sqrt(k / (k - 1) * sum((a - r * b) ** 2 for a, b in pairs)) / total


def per_segment(segments) -> list[dict]:
    """Each segment's sums per statistic and its counts, by the plain-Python reference loops."""
    out = []
    for seg in segments:
        ref = reference([seg])
        sums = {k: np.asarray(v) for k, v in ref["sums"].items()}
        sums["queries"] = np.full((L, H), float(len(seg[0])))
        sums.setdefault("spearman_sum", np.zeros((L, H)))
        sums.setdefault("spearman_count", np.zeros((L, H)))
        out.append(sums)
    return out


TABLES = {  # metrics.json table -> (reference sum, reference count)
    **{f"attention/patterns/{p}": (f"att_{p}", "queries") for p in PATTERNS},
    **{f"attribution/patterns/{p}": (f"attr_{p}", "queries") for p in PATTERNS},
    "attention/entropy": ("att_entropy", "queries"), "attribution/entropy": ("attr_entropy", "queries"),
    "attribution/self": ("self", "queries"), "attribution/self_top1": ("self_top1", "queries"),
    "discrepancy/js": ("js", "queries"), "discrepancy/tv": ("tv", "queries"), "discrepancy/top1": ("top1", "queries"),
    "discrepancy/spearman": ("spearman_sum", "spearman_count"),
}


def lookup(block: dict, name: str):
    for part in name.split("/"):
        block = block[part]
    return block


def close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-13)


def test_standard_errors_match_a_direct_computation_from_segment_values() -> None:
    rng = np.random.default_rng(12)
    segments = [random_segment(rng, n) for n in (1, 2, 3, 4, 6, 7, 5, 8, 3)]
    seg = per_segment(segments)
    block = run(segments, batch_size=4, extra=2).compute_block()
    stderr = block["stderr"]
    checked = 0
    for table, (key, count) in TABLES.items():
        got = lookup(stderr, table)
        for layer in range(L):
            for head in range(H):
                want = direct_se([s[key][layer, head] for s in seg], [s[count][layer, head] for s in seg])
                assert close(got[layer][head], want), (table, layer, head, got[layer][head], want)
                checked += want is not None
    assert checked > 100


def test_layer_mean_standard_errors() -> None:
    rng = np.random.default_rng(13)
    segments = [random_segment(rng, n) for n in (4, 6, 5, 3, 7)]
    seg = per_segment(segments)
    layer_means = run(segments, batch_size=2).compute_block()["stderr"]["layer_means"]
    for table, (key, count) in TABLES.items():
        for layer in range(L):
            want = direct_se([s[key][layer].sum() for s in seg], [s[count][layer].sum() for s in seg])
            assert close(lookup(layer_means, table)[layer], want), (table, layer)


def test_lift_standard_error_is_the_delta_method_on_segment_values() -> None:
    rng = np.random.default_rng(14)
    segments = [random_segment(rng, n) for n in (4, 6, 5, 3, 7, 9, 2)]
    seg = per_segment(segments)
    pers = run(segments, batch_size=3).compute_block()["persistence"]
    for p in PATTERNS:
        for layer in range(L):
            # lift[p][l] = sum_k t_k / sum_k H u_k, u_k the segment's uniform sum (equal in every head)
            x = [s[f"attr_{p}"][layer].sum() for s in seg]
            y = [H * s[f"uniform_{p}"][layer, 0] for s in seg]
            assert close(pers["lift"][p][layer], sum(x) / sum(y) if sum(y) else None, rel=1e-12)
            assert close(pers["lift_stderr"][p][layer], direct_se(x, y)), (p, layer)
        lower = [v - Z95 * s if v is not None and s is not None else None
                 for v, s in zip(pers["lift"][p], pers["lift_stderr"][p], strict=True)]
        assert pers["persists_ci"][p] == all(v is not None and v >= pers["kappa"] for v in lower)
        assert not pers["persists_ci"][p] or pers["persists"][p]


def test_one_segment_has_no_standard_error() -> None:
    rng = np.random.default_rng(15)
    block = run([random_segment(rng, 5)]).compute_block()
    assert block["stderr"]["discrepancy"]["js"] == [[None] * H] * L
    assert block["persistence"]["persists_ci"] == dict.fromkeys(PATTERNS, False)


def test_sum_states_and_influences_agree() -> None:
    gen = torch.Generator().manual_seed(0)
    n = torch.randint(1, 30, (25,), generator=gen).to(torch.float64)
    s = n * torch.rand(25, generator=gen, dtype=torch.float64)
    from_sums = ratio_stderr(s.sum(), n.sum(), (s * s).sum(), (s * n).sum(), (n * n).sum(), torch.tensor(25.0))
    from_influence = influence_stderr(influence(s, n))
    assert from_sums.item() == pytest.approx(from_influence.item(), rel=1e-12)
    assert from_sums.item() == pytest.approx(direct_se(s.tolist(), n.tolist()), rel=1e-12)


# --------------------------------------------------------------------------- coverage


def simulated_batch(rng: np.random.Generator, segments: int, heads: int, width: int = 12):
    """Segments of 2..12 tokens; per head, query i puts mass q on itself (q ~ Beta(5 p, 5 (1-p)), the
    segment's p ~ Beta(2 + n/4, 3): longer segments attend more to themselves) and the rest on token 0."""
    lengths = rng.integers(2, width + 1, size=segments)
    mask = torch.from_numpy(np.arange(width)[None, :] < lengths[:, None]).long()
    p = rng.beta(2 + lengths[:, None] / 4, 3, size=(segments, heads))
    q = rng.beta(5 * p[..., None], 5 * (1 - p[..., None]), size=(segments, heads, width))
    eye = np.eye(width)
    rows = q[..., :, None] * eye + (1 - q[..., :, None]) * eye[0]  # (B, H, n, n): q on i, 1 - q on token 0
    dist = torch.from_numpy(rows[:, None])
    valid = mask.bool()
    self_keys = valid[:, :, None] & valid[:, None, :] & torch.eye(width, dtype=torch.bool)  # the ``self`` key set
    return dist, mask, {"self": self_keys}


def true_self_mass() -> float:
    """The token-weighted mean of the self mass, ``E[n E[q|n]] / E[n]`` (q's mean at query 0 included:
    token 0's row puts q on itself and 1 - q on itself again, so its self mass is 1)."""
    ns = range(2, 13)
    mean_p = {n: (2 + n / 4) / (2 + n / 4 + 3) for n in ns}
    return sum(1 + (n - 1) * mean_p[n] for n in ns) / sum(ns)


def test_95_percent_intervals_cover_the_true_mean_at_their_nominal_rate() -> None:
    rng = np.random.default_rng(16)
    truth = true_self_mass()
    heads, replicates, segments = 2, 600, 40
    covered = covered_layer = 0
    for _ in range(replicates):
        dist, mask, masks = simulated_batch(rng, segments, heads)
        metric = PatternMass(1, heads, patterns=("self",))
        metric.update(dist, mask, masks)
        mean = metric.compute()["self"][0]
        head_se, layer_se = metric.standard_errors()["mass_self"]
        covered += int((mean - truth).abs().le(Z95 * head_se[0]).sum())
        covered_layer += int(abs(mean.mean() - truth) <= Z95 * layer_se[0])
    rate, layer_rate = covered / (replicates * heads), covered_layer / replicates
    assert 0.925 <= rate <= 0.97, rate
    assert 0.92 <= layer_rate <= 0.975, layer_rate


# --------------------------------------------------------------------------- tests


def test_p_values_are_two_sided_normal() -> None:
    stats = pytest.importorskip("scipy.stats")
    est = torch.tensor([0.0, 1.0, -2.0, 3.0, 0.0, 1.0, math.nan])
    se = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 1.0])
    p = two_sided_p(est, se)
    for i in range(4):
        assert p[i].item() == pytest.approx(2 * stats.norm.sf(abs(est[i].item()) / se[i].item()), rel=1e-12)
    assert p[4].item() == 1.0 and p[5].item() == 0.0 and math.isnan(p[6].item())


def test_benjamini_hochberg_against_scipy_and_by_hand() -> None:
    stats = pytest.importorskip("scipy.stats")
    assert benjamini_hochberg(torch.tensor([0.01, 0.04, 0.03, 0.2])).tolist() == [True, False, False, False]
    assert benjamini_hochberg(torch.tensor([0.01, 0.02, 0.03, 0.04])).tolist() == [True] * 4
    assert benjamini_hochberg(torch.tensor([[0.5, math.nan], [0.001, 0.9]])).tolist() == [[False, False],
                                                                                      [True, False]]
    rng = np.random.default_rng(17)
    for _ in range(20):
        p = np.concatenate([rng.random(40), rng.random(10) * 1e-3])
        want = stats.false_discovery_control(p) <= 0.05
        assert benjamini_hochberg(torch.from_numpy(p)).tolist() == want.tolist()
