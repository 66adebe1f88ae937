"""One corpus: which reader, which options, and the segments they give (``data.*`` options).

:class:`CorpusSpec` is the one list of the corpus options of the ``data`` config group; the
analysis data module and the fine-tuning data module both take it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from bertstory.data.hf import read_hf
from bertstory.data.pang_lee import read_pang_lee
from bertstory.data.segments import Segment
from bertstory.data.text import read_text
from bertstory.data.wiki import read_wiki
from bertstory.errors import BertstoryError

READERS = ("wiki", "text", "pang_lee", "hf")


@dataclass
class Corpus:
    """Segments in corpus order (str, or (A, B) pairs), skipped items, optional labels."""

    segments: list[Segment]
    skipped: int = 0
    labels: list[int] | None = None
    pairs: bool = False


@dataclass(frozen=True)
class CorpusSpec:
    """The corpus options of the ``data`` group: the reader and what it reads.

    ``path`` (text), ``dataset``/``config``/``split``/``column``/``column_b`` (hf), ``limit`` (first
    N segments; pairs count as one) and ``pairs`` (consecutive texts as ``[CLS] A [SEP] B [SEP]``).
    """

    reader: str
    path: str | None = None
    limit: int | None = None
    pairs: bool = False
    dataset: str | None = None
    config: str | None = None
    split: str | None = None
    column: str = "text"
    column_b: str | None = None

    @classmethod
    def from_options(cls, reader: str, options: dict) -> CorpusSpec:
        """A spec from the ``data`` group's keys; an unknown key is a one-line error naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BertstoryError(f"unknown data option data.{unknown[0]}: use {', '.join(sorted(known - {'reader'}))}")
        return cls(reader=reader, **options)

    @property
    def paired(self) -> bool:
        """Whether segments are ``(A, B)`` pairs (``pairs``, or a second column)."""
        return bool(self.pairs) or bool(self.column_b)

    def check(self) -> None:
        """Refuse options that do not fit together."""
        limit = self.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise BertstoryError(f"data.limit must be a positive integer or null, got {limit!r}")
        if self.reader not in READERS:
            raise BertstoryError(f"unknown data reader {self.reader!r}: use one of {', '.join(READERS)}")
        if self.column_b and self.reader != "hf":
            raise BertstoryError("data.column_b is only for data=hf: leave it unset")

    def read(self) -> Corpus:
        """Read the corpus: the first ``limit`` segments.

        With ``pairs`` consecutive texts become ``(A, B)`` pairs (an odd leftover is skipped),
        except for ``hf`` with ``column_b``, whose pairs come from the two columns.
        """
        self.check()
        pairs, column_b = self.paired, self.column_b
        # consecutive pairing needs twice as many texts
        n_texts = None if self.limit is None else (2 * self.limit if pairs and not column_b else self.limit)
        texts, skipped, labels = self._texts(n_texts)
        if pairs and not column_b:
            segments, leftover = pair_up(texts)
            skipped += leftover
            if labels is not None:  # a pair keeps the label of its first sentence
                labels = labels[0 : 2 * len(segments) : 2]
        else:
            segments = list(texts)
        if not segments:
            where = self.path or self.dataset or self.reader
            what = "no pairs of segments" if pairs else "no segments"
            raise BertstoryError(f"corpus {where} is empty ({what}): check the data.* options")
        return Corpus(segments=segments, skipped=skipped, labels=labels, pairs=pairs)

    def _texts(self, n_texts: int | None) -> tuple[list, int, list[int] | None]:
        """The reader's first ``n_texts`` texts, how many it skipped, and labels (pang_lee only)."""
        if self.reader == "wiki":
            return (*read_wiki(n_texts), None)
        if self.reader == "text":
            if not self.path:
                raise BertstoryError("data=text needs a file: pass data.path=FILE (one segment per line)")
            return (*read_text(self.path, n_texts), None)
        if self.reader == "pang_lee":
            labelled = read_pang_lee()[:n_texts]
            return [t for t, _ in labelled], 0, [y for _, y in labelled]
        if not self.dataset:
            raise BertstoryError("data=hf needs a dataset: pass data.dataset=NAME_OR_DIR")
        return (*read_hf(self.dataset, self.config, self.split, self.column, self.column_b, n_texts), None)


def pair_up(texts: Sequence[str]) -> tuple[list[tuple[str, str]], int]:
    """Consecutive texts as pairs ``(texts[2k], texts[2k+1])``; returns the pairs and the odd leftover."""
    pairs = [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2)]
    return pairs, len(texts) % 2


def read_corpus(reader: str, **options) -> Corpus:
    """Read one corpus with the ``data`` group's options (:class:`CorpusSpec`)."""
    return CorpusSpec.from_options(reader, options).read()
