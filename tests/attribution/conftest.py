"""Fixtures of the attribution tests."""

import pytest


@pytest.fixture(scope="module")
def tiny(tiny64):
    """The shared float64 tiny model (tests/conftest.py)."""
    return tiny64
