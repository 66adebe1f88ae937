"""Where the corpora that ship inside installed packages live."""

from __future__ import annotations

import importlib.util
import os

from bertstory.errors import BertstoryError


def gensim_datapath(name: str) -> str:
    """Path of a file shipped in gensim's test data (= ``gensim.test.utils.datapath(name)``).

    Computed from the package location: importing ``gensim.test.utils`` builds demo corpora.
    """
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise BertstoryError(f"gensim is not installed, {name} ships with it: pip install gensim")
    return os.path.join(list(spec.submodule_search_locations)[0], "test", "test_data", name)
