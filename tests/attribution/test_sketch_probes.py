"""``attribution.probes_kind``: orthogonal probes are unbiased, sharper than Rademacher's and exact at ``m = d``.

References are brute-force Jacobians of the Hugging Face modules (tests/attribution/test_methods.py).
"""

from __future__ import annotations

import pytest
import torch

from bertstory.attribution.sketch import orthogonal_probes, rademacher_probes
from bertstory.errors import BertstoryError
from tests.attribution.test_methods import TEXTS, encode, jacobian, ref_exact
from tests.conftest import make_method

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def segment(tiny):
    return encode(tiny.tokenizer, *TEXTS[0])


def sketch_sq(model, ids, tt, probes, seed, kind, wrt="embeddings"):
    s = make_method("sketch", probes=probes, seed=seed, probes_kind=kind, wrt=wrt, dtype="float64")
    return s.scores(model, ids, tt).pow(2)


def test_orthogonal_probes_are_orthonormal_rows_and_seeded():
    gen = torch.Generator().manual_seed(0)
    u, w = orthogonal_probes(5, 12, 32, gen)
    assert u.shape == (5, 12, 32) and w == 32 / 12
    torch.testing.assert_close(u @ u.transpose(1, 2), torch.eye(12, dtype=u.dtype).expand(5, 12, 12))
    again, _ = orthogonal_probes(5, 12, 32, torch.Generator().manual_seed(0))
    assert torch.equal(u, again)
    # m > d: blocks of d orthonormal rows, each block a full basis
    big, w = orthogonal_probes(2, 40, 16, torch.Generator().manual_seed(1))
    assert big.shape == (2, 40, 16) and w == 16 / 40
    eye16 = torch.eye(16, dtype=u.dtype).expand(2, 16, 16)
    torch.testing.assert_close(big[:, 16:32] @ big[:, 16:32].transpose(1, 2), eye16)
    r, w = rademacher_probes(3, 4, 8, torch.Generator().manual_seed(0))
    assert set(r.unique().tolist()) == {-1.0, 1.0} and w == 1 / 4


@pytest.mark.parametrize("wrt", ["embeddings", "word"])
@pytest.mark.parametrize("blocks", [1, 2])
def test_orthogonal_sketch_is_exact_at_m_equal_d(tiny, segment, wrt, blocks):
    """m = d_in (and m = 2 d_in: two full bases) orthonormal probes per token give ||J||_F^2 exactly."""
    ids, tt = segment
    J, inp = jacobian(tiny.model, ids, tt, wrt, "context")
    d_in = inp.shape[-1]
    got = sketch_sq(tiny.model, ids, tt, blocks * d_in, seed=5, kind="orthogonal", wrt=wrt)
    torch.testing.assert_close(got, ref_exact(J).pow(2), atol=1e-10, rtol=1e-10)
    # Rademacher probes at m = d_in are not exact
    rad = sketch_sq(tiny.model, ids, tt, d_in, seed=5, kind="rademacher", wrt=wrt)
    assert (rad - ref_exact(J).pow(2)).abs().max() > 1e-3 * ref_exact(J).pow(2).max()


def test_orthogonal_sketch_is_unbiased_and_sharper(tiny, segment):
    """The mean over seeds of 4-probe orthogonal estimates converges to exact's s^2 (no bias), and
    at 16 of d = 32 probes their error is well below Rademacher's (variance shrinks as m -> d)."""
    ids, tt = segment
    J, _ = jacobian(tiny.model, ids, tt, "embeddings", "context")
    exact2 = ref_exact(J).pow(2)
    K = 64
    est = torch.stack([sketch_sq(tiny.model, ids, tt, 4, seed=s, kind="orthogonal") for s in range(K)])

    def mean_err(k):
        return ((est[:k].mean(0) - exact2).abs() / exact2).mean().item()

    assert mean_err(K) < mean_err(4) / 2.5  # ~ 1/sqrt(seeds): no plateau, so no bias
    assert abs(((est.mean(0) - exact2) / exact2).mean().item()) < 0.02

    def err(kind):
        return torch.stack([(sketch_sq(tiny.model, ids, tt, 16, seed=s, kind=kind) - exact2).abs() / exact2
                            for s in range(8)]).mean().item()

    assert err("orthogonal") < 0.8 * err("rademacher")


def test_bad_probes_kind_is_refused():
    with pytest.raises(BertstoryError, match="probes_kind"):
        make_method("sketch", probes_kind="gaussian")


def test_options_record_the_probe_kind():
    info = make_method("sketch", probes_kind="orthogonal").info()
    assert info["probes_kind"] == "orthogonal"
