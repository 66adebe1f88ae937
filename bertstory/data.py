"""Corpora, tokenisation and length-bucketed, cost-balanced batches.

Readers (each returns the segments in corpus order and how many items it skipped):

- ``wiki``: the English Wikipedia excerpt shipped inside gensim, parsed with gensim's wiki
  utilities, cleaned of leftover markup and split into sentences with pysbd.
- ``text``: one segment per line of a UTF-8 file.
- ``pang_lee``: the labelled movie-review sentences shipped inside gensim (cp1252 encoded).
- ``hf``: a Hugging Face ``datasets`` dataset (by name or a ``save_to_disk`` directory).

``SegmentDataModule`` reads one corpus, tokenises it once and serves it to ``Trainer.predict``
through ``CostBalancedBatchSampler``: segments of similar length are batched together and the
batches are spread over the processes by their cost (attribution grows with n^2).
"""

from __future__ import annotations

import bz2
import html
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bertstory.errors import BertstoryError

log = logging.getLogger(__name__)

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
PANG_LEE_FILE = "pang_lee_polarity.cor"
READERS = ("wiki", "text", "pang_lee", "hf")

Segment = str | tuple[str, str]
T = TypeVar("T")


def gensim_datapath(name: str) -> str:
    """Path of a file shipped in gensim's test data (= ``gensim.test.utils.datapath(name)``).

    Computed from the package location: importing ``gensim.test.utils`` builds demo corpora.
    """
    import importlib.util

    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise BertstoryError(f"gensim is not installed, {name} ships with it: pip install gensim")
    return os.path.join(list(spec.submodule_search_locations)[0], "test", "test_data", name)


# --------------------------------------------------------------------------------------------
# wiki
# --------------------------------------------------------------------------------------------

# Sections whose content is references and link lists, not prose.
_WIKI_STOP_SECTIONS = {
    "references", "notes", "footnotes", "citations", "sources", "bibliography", "further reading",
    "external links", "see also", "notes and references", "references and notes", "works cited",
    "selected works", "works", "publications", "discography", "filmography", "gallery",
}
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*=+\s*$")
# Lines that are not paragraphs: list items, definitions, indented text, table rows and markup.
_NON_PROSE_LINE = re.compile(r"^\s*(?:[*#:;|!{}]|=|\[\[|__)")
_LEFTOVER_MARKUP = [
    (re.compile(r"'{2,}"), ""),  # bold / italic quotes
    (re.compile(r"\{\{[^{}]*\}\}"), ""),  # a template that survived
    (re.compile(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]"), r"\1"),  # a link that survived
    (re.compile(r"\{\{|\}\}|\[\[|\]\]"), ""),  # unbalanced template / link brackets
    (re.compile(r"</?\w+[^>]*>"), ""),  # leftover html tags
    (re.compile(r"__[A-Z]+__"), ""),  # magic words (__NOTOC__)
]
_PARENS = re.compile(r"\(([^()]*)\)")
_SENTENCE_GAP = re.compile(r"([.!?][\"'\u201d\u2019)]*)\s{2,}")
_TERMINAL = re.compile(r"[.!?][\"'\u201d\u2019)]*$")
_MARKUP_CHARS = re.compile(r"[=|{}\[\]<>]|''|&\w+;|thumb|https?:|www\.")
# Traces of a removed template in the middle of a sentence ("from the Greek , i.e.", "some  south
# of"): the text around it is damaged, so such sentences are rejected rather than patched up.
_DAMAGE = re.compile(r"\S\s{2,}\S|\s[,;:)]|\s\.(?!\.\.)|\(\s|\s\)")

MIN_WORDS = 5
MIN_LETTER_SHARE = 0.75


def _repair_parens(match: re.Match) -> str:
    """``( ; , Akhilleus, )`` -> ``(Akhilleus)``; ``()`` -> removed (pronunciation templates)."""
    inner = match.group(1).strip(" \t,;:")
    return f"({inner})" if inner else "\0"


def _clean_paragraph(line: str) -> str:
    """Strip the markup that gensim's ``filter_wiki`` leaves in a paragraph."""
    text = html.unescape(line).replace("\t", " ").replace("\u00a0", " ").replace("\u200b", "")
    for pattern, repl in _LEFTOVER_MARKUP:
        text = pattern.sub(repl, text)
    text = _PARENS.sub(_repair_parens, text)
    text = re.sub(r" ?\0", "", text)  # an emptied pair of parentheses and the space before it
    text = _SENTENCE_GAP.sub(r"\1 ", text)
    return text.strip()


def is_prose(sentence: str) -> bool:
    """Whether a sentence looks like clean English prose.

    At least ``MIN_WORDS`` words, starts with an upper-case letter, a digit or an opening quote,
    ends with terminal punctuation, balanced parentheses, no markup characters, and at least
    ``MIN_LETTER_SHARE`` of its non-space characters are letters.
    """
    words = sentence.split()
    if len(words) < MIN_WORDS:
        return False
    first = sentence[0]
    if not (first.isupper() or first.isdigit() or first in "\"'\u201c\u2018("):
        return False
    if not _TERMINAL.search(sentence):
        return False
    if _MARKUP_CHARS.search(sentence):
        return False
    if sentence.count("(") != sentence.count(")") or sentence.count('"') % 2:
        return False
    if _DAMAGE.search(sentence):
        return False
    chars = [c for c in sentence if not c.isspace()]
    letters = sum(c.isalpha() for c in chars)
    return letters >= MIN_LETTER_SHARE * len(chars)


def _wiki_paragraphs(path: str) -> Iterator[str]:
    """Paragraphs of the article pages of a MediaWiki dump, markup removed, in page order."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.BZ2File(path) as f:
        # namespace "0" = articles; others (Talk:, User:, Template:, ...) come back as "".
        for _title, raw, _pageid in extract_pages(f, filter_namespaces=("0",)):
            if not raw or raw.lstrip()[:9].upper() == "#REDIRECT":
                continue
            text = filter_wiki(raw)
            skip_section = False
            for line in text.split("\n"):
                line = line.strip()
                if not line:
                    continue
                heading = _HEADING.match(line)
                if heading:
                    skip_section = heading.group(2).strip().lower() in _WIKI_STOP_SECTIONS
                    continue
                if skip_section or _NON_PROSE_LINE.match(line) or "thumb|" in line:
                    continue
                yield _clean_paragraph(line)


def iter_wiki_candidates(path: str | None = None) -> Iterator[tuple[str, bool]]:
    """Every pysbd sentence of the wiki excerpt's article paragraphs, with whether it is prose.

    Lazy: parsing stops as soon as the consumer stops iterating.
    """
    import pysbd

    if path is None:
        path = gensim_datapath(WIKI_FILE)
    if not os.path.isfile(path):
        raise BertstoryError(f"wiki dump {path} not found: reinstall gensim (pip install -U gensim)")
    segmenter = pysbd.Segmenter(language="en", clean=False)
    for paragraph in _wiki_paragraphs(path):
        if not paragraph:
            continue
        for sentence in segmenter.segment(paragraph):
            sentence = sentence.strip()
            if sentence:
                yield sentence, is_prose(sentence)


def iter_wiki(path: str | None = None) -> Iterator[str]:
    """The clean sentences of the wiki excerpt, in article and sentence order (lazy)."""
    for sentence, ok in iter_wiki_candidates(path):
        if ok:
            yield sentence


def take_usable(candidates: Iterable[T | None], limit: int | None) -> tuple[list[T], int]:
    """The first ``limit`` usable candidates (all when None) and how many unusable ones (None) came before.

    Reading stops as soon as ``limit`` are collected, so a lazy source is only read that far.
    """
    out: list[T] = []
    skipped = 0
    if limit is not None and limit <= 0:
        return out, skipped
    for item in candidates:
        if item is None:
            skipped += 1
            continue
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out, skipped


def read_wiki(limit: int | None = None, path: str | None = None) -> tuple[list[str], int]:
    """The first ``limit`` clean wiki sentences (all when None) and how many were rejected.

    ``skipped`` counts the pysbd sentences that failed ``is_prose`` before the limit was reached
    (headings, list items, tables and reference sections are dropped earlier and not counted).
    """
    return take_usable((sentence if ok else None for sentence, ok in iter_wiki_candidates(path)), limit)


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------


def iter_text(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of every line of a UTF-8 file (lazy).

    Raises ``BertstoryError`` for a missing file, a directory, an unreadable file, or a line that
    is not valid UTF-8 (naming the line).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BertstoryError(f"corpus file {path} not found: pass an existing file as data.path=FILE")
    if os.path.isdir(path):
        raise BertstoryError(f"corpus file {path} is a directory: pass a text file as data.path=FILE")
    try:
        f = open(path, "rb")  # binary: each line is decoded on its own, to name a bad line
    except OSError as e:
        raise BertstoryError(f"cannot read corpus file {path} ({e.strerror}): check its permissions") from e
    with f:
        try:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise BertstoryError(
                        f"corpus file {path} is not UTF-8 at line {lineno} (byte {e.start + 1}): "
                        "convert it, e.g. iconv -f cp1252 -t utf-8"
                    ) from None
                yield lineno, line.strip()
        except OSError as e:
            raise BertstoryError(f"cannot read corpus file {path} ({e.strerror}): check the file") from e


def read_text(path: str | os.PathLike, limit: int | None = None) -> tuple[list[str], int]:
    """The first ``limit`` non-blank lines of a UTF-8 file (all when None) and the blank lines skipped.

    Reading stops once ``limit`` segments are collected; blank lines are counted up to there.
    """
    if limit is not None and limit <= 0:
        return [], 0
    texts, skipped = take_usable((line or None for _lineno, line in iter_text(path)), limit)
    if not texts:
        raise BertstoryError(
            f"corpus {os.fspath(path)} is empty (no non-blank lines): pass a file with one segment per line"
        )
    return texts, skipped


# --------------------------------------------------------------------------------------------
# pang_lee
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# hf
# --------------------------------------------------------------------------------------------


def load_hf_dataset(dataset: str, config: str | None = None, split: str | None = None):
    """A ``datasets.Dataset``: ``load_from_disk`` for an existing directory, else ``load_dataset``."""
    try:
        import datasets
    except ImportError:
        raise BertstoryError("data=hf needs the datasets package: pip install datasets") from None
    split = split or "validation"
    try:
        if os.path.isdir(os.fspath(dataset)):
            ds = datasets.load_from_disk(os.fspath(dataset))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise BertstoryError(
                        f"dataset {dataset} has no split {split!r} (splits: {', '.join(ds)}): "
                        "set data.split="
                    )
                ds = ds[split]
        else:
            ds = datasets.load_dataset(dataset, config, split=split)
    except BertstoryError:
        raise
    except Exception as e:  # datasets raises many kinds; all mean "cannot load"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BertstoryError(
            f"cannot load dataset {dataset} (config {config}, split {split}): {msg}; "
            "check data.dataset, data.config, data.split and the network/HF cache"
        ) from e
    return ds


def _check_columns(ds, dataset: str, columns: Sequence[str]) -> None:
    names = list(ds.column_names)
    for column in columns:
        if column not in names:
            raise BertstoryError(
                f"dataset {dataset} has no column {column!r} (columns: {', '.join(names)}): set data.column="
            )


def _usable(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def read_hf(
    dataset: str,
    config: str | None = None,
    split: str | None = None,
    column: str = "text",
    column_b: str | None = None,
    limit: int | None = None,
) -> tuple[list[Segment], int]:
    """Rows of a Hugging Face dataset: texts of ``column`` (or ``(column, column_b)`` pairs).

    Rows whose text is missing, not a string or blank are skipped and counted. Stops at ``limit``.
    """
    ds = load_hf_dataset(dataset, config, split)
    columns = [column] + ([column_b] if column_b else [])
    _check_columns(ds, dataset, columns)
    return take_usable(_hf_segments(ds, column, column_b), limit)


def _hf_segments(ds, column: str, column_b: str | None) -> Iterator[Segment | None]:
    """Each row's text (or (A, B) pair), None for a row with a missing or blank text; read 1024 rows at a time."""
    chunk = 1024
    for start in range(0, len(ds), chunk):
        rows = ds[start : start + chunk]
        for i in range(len(rows[column])):
            a = _usable(rows[column][i])
            b = _usable(rows[column_b][i]) if column_b else None
            yield None if a is None or (column_b and b is None) else ((a, b) if column_b else a)


# --------------------------------------------------------------------------------------------
# one corpus
# --------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Segments in corpus order (str, or (A, B) pairs), skipped items, optional labels."""

    segments: list[Segment]
    skipped: int = 0
    labels: list[int] | None = None
    pairs: bool = False


def pair_up(texts: Sequence[str]) -> tuple[list[tuple[str, str]], int]:
    """Consecutive texts as pairs ``(texts[2k], texts[2k+1])``; returns the pairs and the odd leftover."""
    pairs = [(texts[i], texts[i + 1]) for i in range(0, len(texts) - 1, 2)]
    return pairs, len(texts) % 2


def read_corpus(
    reader: str,
    *,
    path: str | None = None,
    limit: int | None = None,
    pairs: bool = False,
    dataset: str | None = None,
    config: str | None = None,
    split: str | None = None,
    column: str = "text",
    column_b: str | None = None,
) -> Corpus:
    """Read one corpus: the first ``limit`` segments (pairs count as one segment).

    With ``pairs`` consecutive texts become ``(A, B)`` pairs (an odd leftover is skipped),
    except for ``hf`` with ``column_b``, whose pairs come from the two columns.
    """
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise BertstoryError(f"data.limit must be a positive integer or null, got {limit!r}")
    if reader not in READERS:
        raise BertstoryError(f"unknown data reader {reader!r}: use one of {', '.join(READERS)}")
    if column_b and reader != "hf":
        raise BertstoryError("data.column_b is only for data=hf: leave it unset")
    pairs = bool(pairs) or bool(column_b)
    # Consecutive pairing needs twice as many texts.
    n_texts = None if limit is None else (2 * limit if pairs and not column_b else limit)
    labels: list[int] | None = None

    if reader == "wiki":
        texts, skipped = read_wiki(n_texts)
    elif reader == "text":
        if not path:
            raise BertstoryError("data=text needs a file: pass data.path=FILE (one segment per line)")
        texts, skipped = read_text(path, n_texts)
    elif reader == "pang_lee":
        labelled = read_pang_lee()
        if n_texts is not None:
            labelled = labelled[:n_texts]
        texts = [t for t, _ in labelled]
        labels = [y for _, y in labelled]
        skipped = 0
    else:
        if not dataset:
            raise BertstoryError("data=hf needs a dataset: pass data.dataset=NAME_OR_DIR")
        texts, skipped = read_hf(dataset, config, split, column, column_b, n_texts)

    if pairs and not column_b:
        segments, leftover = pair_up(texts)
        skipped += leftover
        if labels is not None:  # a pair keeps the label of its first sentence
            labels = labels[0 : 2 * len(segments) : 2]
    else:
        segments = list(texts)
    if not segments:
        where = path or dataset or reader
        what = "no pairs of segments" if pairs else "no segments"
        raise BertstoryError(f"corpus {where} is empty ({what}): check the data.* options")
    return Corpus(segments=segments, skipped=skipped, labels=labels, pairs=pairs)


# --------------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------------


def segment_cost(n: int) -> int:
    """Relative cost of one segment of ``n`` tokens: attribution grows with n^2."""
    return n * n


class CostBalancedBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches, spread over ``world_size`` processes by cost.

    1. Segments are sorted by length (ties by index) and cut into batches of ``batch_size``, so a
       batch holds segments of similar length and little padding is computed. When there are
       fewer such batches than processes but at least as many segments, the sorted segments are
       cut into ``world_size`` near-equal batches instead, so that every process gets one.
    2. A batch costs ``len(batch) * segment_cost(longest)`` (what its padded tensors cost).
       Batches go to processes greedily, most expensive first, each to the process with the
       least cost so far (longest-processing-time rule; ties to the lower rank and the earlier
       batch), so the processes finish at about the same time. Deterministic; every segment is
       in exactly one batch of exactly one process. Processes may get different numbers of batches.

    Iterating yields this ``rank``'s batches (lists of dataset indices), most expensive first.
    ``indices`` restricts the batches to those dataset indices (default: all), e.g. the segments a
    resumed run has not analysed yet.

    Use it with ``Trainer(use_distributed_sampler=False)``. It deliberately is no ``BatchSampler``
    subclass and has no ``drop_last`` attribute: either would make Lightning try to rebuild it
    around its own sampler for prediction (it only warns that it cannot check ``drop_last``).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, rank: int = 0, world_size: int = 1,
                 indices: Sequence[int] | None = None):
        if batch_size < 1:
            raise BertstoryError(f"data.batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of size {world_size}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.indices = range(len(self.lengths)) if indices is None else [int(i) for i in indices]
        self.batches = self._make_batches()
        self.costs = [self.batch_cost(b) for b in self.batches]
        self.assignment = self._assign()

    def _make_batches(self) -> list[list[int]]:
        order = sorted(self.indices, key=lambda i: (self.lengths[i], i))
        n = len(order)
        n_batches = -(-n // self.batch_size)
        if n_batches >= self.world_size or n < self.world_size:
            return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        # Fewer batches than processes: world_size contiguous near-equal batches.
        q, r = divmod(n, self.world_size)
        sizes = [q + 1 if j < r else q for j in range(self.world_size)]
        out, start = [], 0
        for size in sizes:
            out.append(order[start : start + size])
            start += size
        return out

    def batch_cost(self, batch: Sequence[int]) -> int:
        """Cost of a padded batch: its size times the cost of its longest segment."""
        return len(batch) * segment_cost(max(self.lengths[i] for i in batch)) if batch else 0

    def _assign(self) -> list[list[int]]:
        by_cost = sorted(range(len(self.batches)), key=lambda b: (-self.costs[b], b))
        loads = [0] * self.world_size
        assignment: list[list[int]] = [[] for _ in range(self.world_size)]
        for b in by_cost:
            r = min(range(self.world_size), key=lambda j: (loads[j], j))
            assignment[r].append(b)
            loads[r] += self.costs[b]
        return assignment

    def rank_batches(self, rank: int | None = None) -> list[list[int]]:
        """The batches (dataset indices) of ``rank`` (default: this sampler's rank)."""
        rank = self.rank if rank is None else rank
        return [list(self.batches[b]) for b in self.assignment[rank]]

    def loads(self) -> list[int]:
        """Total cost per rank."""
        return [sum(self.costs[b] for b in bs) for bs in self.assignment]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.rank_batches()

    def __len__(self) -> int:
        return len(self.assignment[self.rank])


class SegmentDataset(Dataset):
    """Tokenised segments; item ``k`` is ``(k, input_ids, token_type_ids or None)``."""

    def __init__(self, input_ids: list[list[int]], token_type_ids: list[bytes] | None = None):
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, k: int) -> tuple[int, list[int], bytes | None]:
        tt = self.token_type_ids[k] if self.token_type_ids is not None else None
        return k, self.input_ids[k], tt


class SegmentCollator:
    """Pads a list of ``SegmentDataset`` items on the right into a batch dict of LongTensors.

    Keys: ``index`` (B,), ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, n) with n the
    longest segment of the batch; padding uses ``pad_token_id``, attention mask 0, token type 0.
    """

    def __init__(self, pad_token_id: int | None):
        self.pad_token_id = 0 if pad_token_id is None else int(pad_token_id)

    def __call__(self, items: Sequence[tuple[int, list[int], bytes | None]]) -> dict[str, torch.Tensor]:
        n = max(len(ids) for _, ids, _ in items)
        b = len(items)
        input_ids = torch.full((b, n), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((b, n), dtype=torch.long)
        token_type_ids = torch.zeros((b, n), dtype=torch.long)
        for row, (_, ids, tt) in enumerate(items):
            m = len(ids)
            input_ids[row, :m] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, :m] = 1
            if tt is not None:
                token_type_ids[row, :m] = torch.tensor(list(tt), dtype=torch.long)
        index = torch.tensor([k for k, _, _ in items], dtype=torch.long)
        return {
            "index": index,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }


# --------------------------------------------------------------------------------------------
# the data module
# --------------------------------------------------------------------------------------------


def _model_limit(tokenizer) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int | float) and not isinstance(limit, bool) and 0 < limit < 1e6:
        return int(limit)
    return None


class SegmentDataModule(L.LightningDataModule):
    """One corpus, tokenised once, served to ``Trainer.predict`` in cost-balanced batches.

    Built by Hydra from ``conf/data/*.yaml``: ``instantiate(cfg.data, tokenizer=tok)``.
    After ``setup()``: ``segments`` (texts or (A, B) pairs), ``labels`` (pang_lee only),
    ``input_ids`` (token id lists; dataset index k = position in the corpus after skipped
    items and ``limit``) and ``stats``, the ``data`` block of metrics.json.
    """

    def __init__(
        self,
        tokenizer,
        name: str,
        reader: str,
        path: str | None = None,
        limit: int | None = None,
        max_length: int = 128,
        pairs: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        dataset: str | None = None,
        config: str | None = None,
        split: str | None = None,
        column: str = "text",
        column_b: str | None = None,
    ):
        super().__init__()
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise BertstoryError(f"data.max_length must be an integer, got {max_length!r}")
        if max_length < 4:
            raise BertstoryError(f"data.max_length={max_length} is too small: use at least 4 tokens")
        model_limit = _model_limit(tokenizer)
        if model_limit is not None and max_length > model_limit:
            raise BertstoryError(
                f"data.max_length={max_length} exceeds the model's limit of {model_limit} tokens: "
                f"set data.max_length<={model_limit}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BertstoryError(f"data.batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise BertstoryError(f"data.num_workers must be an integer >= 0, got {num_workers!r}")
        if reader not in READERS:
            raise BertstoryError(f"unknown data reader {reader!r}: use one of {', '.join(READERS)}")
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer
        self.name = name
        self.reader = reader
        self.path = path
        self.limit = limit
        self.max_length = max_length
        self.pairs = bool(pairs) or bool(column_b)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.dataset = dataset
        self.config = config
        self.split = split
        self.column = column
        self.column_b = column_b
        self.segments: list[Segment] | None = None
        self.labels: list[int] | None = None
        self.input_ids: list[list[int]] | None = None
        self.token_type_ids: list[bytes] | None = None
        self.done: frozenset[int] = frozenset()
        self.stats: dict[str, Any] = {"name": name, "segments": 0, "tokens": 0, "truncated": 0, "skipped": 0}

    # -- reading and tokenising ---------------------------------------------------------------

    def prepare_texts(self) -> None:
        """Read the corpus and tokenise it (once; later calls do nothing)."""
        if self.input_ids is not None:
            return
        corpus = read_corpus(
            self.reader,
            path=self.path,
            limit=self.limit,
            pairs=self.pairs,
            dataset=self.dataset,
            config=self.config,
            split=self.split,
            column=self.column,
            column_b=self.column_b,
        )
        input_ids, token_type_ids, truncated = self._tokenize(corpus.segments)
        self.segments = corpus.segments
        self.labels = corpus.labels
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids if self.pairs else None
        self.stats = {
            "name": self.name,
            "segments": len(input_ids),
            "tokens": sum(len(ids) for ids in input_ids),
            "truncated": truncated,
            "skipped": corpus.skipped,
        }
        s = self.stats
        log.info(
            "data %s: %d segments, %d tokens, %d truncated to %d tokens, %d skipped",
            s["name"], s["segments"], s["tokens"], s["truncated"], self.max_length, s["skipped"],
        )

    def _tokenize(self, segments: list[Segment], chunk: int = 2048):
        tok = self.tokenizer
        input_ids: list[list[int]] = []
        token_type_ids: list[bytes] = []
        truncated = 0
        for start in range(0, len(segments), chunk):
            part = segments[start : start + chunk]
            if self.pairs:
                args = ([a for a, _ in part], [b for _, b in part])
                trunc: bool | str = "longest_first"
            else:
                args = (list(part),)
                trunc = True
            try:
                enc = tok(*args, truncation=trunc, max_length=self.max_length, add_special_tokens=True)
            except Exception as e:  # tokenizers raise plain exceptions for impossible truncations
                raise BertstoryError(
                    f"cannot tokenise {self.name} with max_length={self.max_length} ({e}): "
                    "raise data.max_length"
                ) from e
            ids = [list(x) for x in enc["input_ids"]]
            tts = enc.get("token_type_ids")
            encodings = getattr(enc, "encodings", None) if getattr(tok, "is_fast", False) else None
            if encodings is not None and len(encodings) == len(ids):
                # a fast tokenizer keeps what truncation cut off in each encoding
                truncated += sum(1 for e in encodings if e.overflowing)
            else:
                full = tok(*args, truncation=False, add_special_tokens=True)["input_ids"]
                truncated += sum(1 for x in full if len(x) > self.max_length)
            input_ids.extend(ids)
            if self.pairs:
                if tts is None:
                    raise BertstoryError(
                        f"the tokenizer {type(tok).__name__} has no token type ids: data.pairs needs a "
                        "BERT-style tokenizer"
                    )
                token_type_ids.extend(bytes(t) for t in tts)
        return input_ids, token_type_ids, truncated

    def setup(self, stage: str | None = None) -> None:
        self.prepare_texts()

    # -- batches --------------------------------------------------------------------------------

    def skip_segments(self, done: set[int] | frozenset[int]) -> None:
        """Leave the segments with these dataset indices out of the batches (a resumed run's finished ones).

        ``stats`` still describe the whole corpus; the batches and ``rank_summary`` cover the rest.
        """
        self.prepare_texts()
        bad = [k for k in done if not 0 <= k < len(self.input_ids)]
        if bad:
            raise BertstoryError(
                f"segment {min(bad)} of the run to resume is not in the corpus ({len(self.input_ids)} segments): "
                "resume with the original data settings"
            )
        self.done = frozenset(done)

    def remaining(self) -> list[int] | None:
        """Dataset indices still to analyse, or None for all of them."""
        if not self.done:
            return None
        return [k for k in range(len(self.input_ids)) if k not in self.done]

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    @property
    def lengths(self) -> list[int]:
        self.prepare_texts()
        return [len(ids) for ids in self.input_ids]

    def batch_sampler(
        self, rank: int | None = None, world_size: int | None = None
    ) -> CostBalancedBatchSampler:
        """The batch sampler of ``rank`` in ``world_size`` (default: from the attached trainer)."""
        r, w = self._rank_world()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
        return CostBalancedBatchSampler(self.lengths, self.batch_size, rank=rank, world_size=world_size,
                                        indices=self.remaining())

    def collator(self) -> SegmentCollator:
        return SegmentCollator(getattr(self.tokenizer, "pad_token_id", None))

    def predict_dataloader(self) -> DataLoader:
        self.prepare_texts()
        return DataLoader(
            SegmentDataset(self.input_ids, self.token_type_ids),
            batch_sampler=self.batch_sampler(),
            collate_fn=self.collator(),
            num_workers=self.num_workers,
        )

    def rank_summary(self, world_size: int | None = None) -> list[tuple[int, int]]:
        """``(segments, tokens)`` per rank, for logging how the work is spread."""
        sampler = self.batch_sampler(rank=0, world_size=world_size)
        lengths = sampler.lengths
        out = []
        for r in range(sampler.world_size):
            idx = [i for b in sampler.rank_batches(r) for i in b]
            out.append((len(idx), sum(lengths[i] for i in idx)))
        return out
