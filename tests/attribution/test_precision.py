"""``attribution.dtype=auto``: bfloat16 only on devices with bf16 units, float32 elsewhere, float64 for float64
models."""

from __future__ import annotations

import pytest
import torch

import bertstory.attribution.precision as precision
from bertstory.errors import BertstoryError
from tests.conftest import TINY, make_method


@pytest.fixture
def flags(monkeypatch):
    """Set the CPU flags that ``auto`` reads."""

    def set_flags(*names):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(names))

    return set_flags


@pytest.mark.parametrize(("names", "expected"), [
    (("avx2", "fma"), "float32"),  # AMD EPYC of this machine: bf16 is emulated, ~60x slower
    (("avx512f", "avx512_bf16"), "bfloat16"),
    (("avx512f", "amx_bf16", "amx_tile"), "bfloat16"),
    ((), "float32"),  # flags unknown (not Linux)
])
def test_auto_on_cpu_follows_the_flags(flags, names, expected):
    flags(*names)
    assert precision.resolve_dtype("auto", "cpu") == expected
    assert precision.resolve_dtype("auto", "cpu", torch.float64) == "float64"
    for explicit in ("float32", "bfloat16", "float64"):
        assert precision.resolve_dtype(explicit, "cpu") == explicit


def test_cpu_flags_read_proc_cpuinfo():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    line = next(ln for ln in text.splitlines() if ln.startswith("flags"))
    assert precision.cpu_flags() == frozenset(line.split(":", 1)[1].split())


@pytest.mark.parametrize("fast", [False, True])
def test_method_resolves_auto_once_and_records_it(flags, fast):
    from bertstory.models import load_encoder

    flags(*(("amx_bf16",) if fast else ("avx2",)))
    model = load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY).model
    method = make_method("quick")
    assert method.dtype == "auto" and method.info()["dtype"] == "auto"
    ids = torch.tensor([[101, 2023, 2003, 102]])
    method.attribute(model, ids, torch.ones_like(ids))
    info = method.info()
    assert info["dtype"] == ("bfloat16" if fast else "float32") and info["dtype_requested"] == "auto"
    flags("amx_bf16") if not fast else flags("avx2")
    method.attribute(model, ids, torch.ones_like(ids))
    assert method.info()["dtype"] == info["dtype"]  # resolved once


def test_default_dtype_is_auto_and_bad_names_are_refused():
    assert make_method("exact").dtype == "auto"
    with pytest.raises(BertstoryError, match="auto or one of"):
        make_method("exact", dtype="int8")
