"""``data=pang_lee``: the labelled movie-review sentences shipped inside gensim (cp1252 encoded)."""

from __future__ import annotations

from bertstory.data.packaged import gensim_datapath
from bertstory.errors import BertstoryError

PANG_LEE_FILE = "pang_lee_polarity.cor"
PANG_LEE_LABELS = {"__label__neg": 0, "__label__pos": 1}


def read_pang_lee(path: str | None = None) -> list[tuple[str, int]]:
    """The labelled sentences of gensim's Pang and Lee polarity sample: ``(text, 0 neg / 1 pos)``.

    The file is cp1252 encoded (it holds e.g. byte 0x97, an em dash). Blank lines are ignored.
    """
    if path is None:
        path = gensim_datapath(PANG_LEE_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BertstoryError(
            f"cannot read {path} ({e.strerror}): reinstall gensim (pip install -U gensim)"
        ) from e
    out: list[tuple[str, int]] = []
    for lineno, line in enumerate(raw.decode("cp1252").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        label, _, text = line.partition(" ")
        if label not in PANG_LEE_LABELS or not text.strip():
            raise BertstoryError(f"{path} line {lineno} is not '__label__neg|pos text': reinstall gensim")
        out.append((text.strip(), PANG_LEE_LABELS[label]))
    return out

