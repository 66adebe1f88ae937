"""The paired test of two runs and of adjacent layers against a direct computation from per-segment values."""

from __future__ import annotations

import math

import pytest
import torch

from bertstory.results.paired import layer_steps, paired_test
from bertstory.results.shards import SegmentStats


def direct_paired(sa: list[float], na: list[float], sb: list[float], nb: list[float]) -> tuple[float, float]:
    """``D = R_B - R_A`` and ``sqrt(K/(K-1) sum_k (zB_k - zA_k)^2)`` with ``z_k = (s_k - R n_k) / sum n``, in loops."""
    k = len(sa)
    ra, rb = sum(sa) / sum(na), sum(sb) / sum(nb)
    z = [(b - rb * m) / sum(nb) - (a - ra * n) / sum(na) for a, n, b, m in zip(sa, na, sb, nb, strict=True)]
    return rb - ra, math.sqrt(k / (k - 1) * sum(v * v for v in z))


def test_paired_test_matches_loops_with_per_run_counts() -> None:
    gen = torch.Generator().manual_seed(0)
    na = torch.randint(3, 20, (15,), generator=gen).double()
    nb = na - torch.randint(0, 3, (15,), generator=gen).double()  # e.g. spearman: other undefined rows
    sa = na * torch.rand(15, generator=gen, dtype=torch.float64)
    sb = nb * torch.rand(15, generator=gen, dtype=torch.float64)
    diff, se, p = paired_test(sa, na, sb, nb)
    want_diff, want_se = direct_paired(sa.tolist(), na.tolist(), sb.tolist(), nb.tolist())
    assert diff.item() == pytest.approx(want_diff, rel=1e-12) and se.item() == pytest.approx(want_se, rel=1e-12)
    assert p.item() == pytest.approx(math.erfc(abs(want_diff) / want_se / math.sqrt(2)), rel=1e-9)


def test_a_shift_shared_by_every_segment_has_no_noise_and_the_same_values_no_difference() -> None:
    n = torch.tensor([4.0, 7.0, 5.0, 9.0], dtype=torch.float64)
    s = torch.tensor([1.0, 3.5, 2.0, 4.0], dtype=torch.float64)
    diff, se, p = paired_test(s, n, s, n)
    assert diff.item() == 0.0 and se.item() == 0.0 and p.item() == 1.0
    diff, se, p = paired_test(s, n, s + 0.1 * n, n)  # every query raised by 0.1
    assert diff.item() == pytest.approx(0.1) and se.item() == pytest.approx(0.0, abs=1e-15)


def test_layer_steps_are_paired_tests_between_adjacent_layers() -> None:
    gen = torch.Generator().manual_seed(1)
    k, layers, heads = 12, 3, 2
    queries = torch.randint(3, 15, (k,), generator=gen).float()
    sums = queries[:, None, None] * torch.rand(k, layers, heads, generator=gen)
    sums[:, 2] += queries[:, None] * 0.5  # a large step from layer 1 to 2
    stats = SegmentStats(indices=torch.arange(k), sums={"discrepancy/js": sums}, counts={"queries": queries})
    steps = layer_steps(stats, "discrepancy/js")
    assert [(s["from"], s["to"]) for s in steps] == [(0, 1), (1, 2)]
    for s in steps:
        m = (heads * queries).tolist()
        a = sums[:, s["from"]].sum(1).tolist()
        b = sums[:, s["to"]].sum(1).tolist()
        want_diff, want_se = direct_paired(a, m, b, m)
        assert s["difference"] == pytest.approx(want_diff, rel=1e-6) and s["stderr"] == pytest.approx(want_se, rel=1e-6)
    assert steps[1]["significant"] and steps[1]["p"] < 1e-4 and not steps[0]["significant"]
