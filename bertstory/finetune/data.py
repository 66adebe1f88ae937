"""Labelled data for ``train.py``: examples with labels, a seeded train/validation split, batches.

``ClassificationDataModule`` is what ``conf/train.yaml`` turns every ``data`` option into. It reuses
the analysis readers and tokenisation of :class:`bertstory.data.SegmentDataModule` and adds labels:

- ``data=pang_lee``: gensim's 200 labelled movie-review sentences, split into train and validation
  (stratified by label, seeded, ``val_fraction`` held out).
- ``data=hf``: a Hugging Face dataset with a label column, by hub name or a ``save_to_disk`` folder.
  ``task=sst2`` (any GLUE task of :mod:`bertstory.glue`) fills in the dataset (``glue``), its config,
  text columns, label count, validation split and metric. Without a validation split, the
  training split is divided as for pang_lee.

Labelled examples reach the model as the batch dicts of :class:`bertstory.data.SegmentCollator`
plus ``labels`` (B,).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from bertstory.data import SegmentCollator, SegmentDataModule
from bertstory.data.hf import check_columns, iter_rows, load_hf_dataset, row_segment
from bertstory.data.pang_lee import read_pang_lee
from bertstory.data.segments import Segment
from bertstory.data.tokenize import tokenize
from bertstory.errors import BertstoryError
from bertstory.finetune.glue import GLUE, PANG_LEE, Task, glue_task

log = logging.getLogger(__name__)

GLUE_HUB = "nyu-mll/glue"  # the hub id of GLUE (data.task= fills it in)


@dataclass
class Examples:
    """Texts (or (A, B) pairs) with integer labels; ``skipped`` rows had no usable text or label."""

    texts: list[Segment]
    labels: list[int]
    skipped: int = 0
    label_names: list[str] | None = field(default=None)

    def take(self, indices: Sequence[int]) -> Examples:
        """The examples at ``indices``, in that order."""
        return Examples([self.texts[i] for i in indices], [self.labels[i] for i in indices], 0, self.label_names)

    def head(self, limit: int | None) -> Examples:
        """The first ``limit`` examples (all of them for None)."""
        return self if limit is None else self.take(range(min(limit, len(self.texts))))


# --------------------------------------------------------------------------------------------
# splitting
# --------------------------------------------------------------------------------------------


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/validation indices with ``round(val_fraction * count)`` of every label held out.

    Both lists are in one seeded random order (so that ``limit`` takes a mix of labels); every
    index is in exactly one of them.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not 0 < val_fraction < 1:
        raise BertstoryError(f"data.val_fraction must be between 0 and 1, got {val_fraction!r}")
    order = list(range(len(labels)))
    random.Random(seed).shuffle(order)
    counts: dict[int, int] = {}
    for y in labels:
        counts[y] = counts.get(y, 0) + 1
    quota = {y: round(val_fraction * c) for y, c in counts.items()}
    train, val = [], []
    for i in order:
        if quota[labels[i]] > 0:
            quota[labels[i]] -= 1
            val.append(i)
        else:
            train.append(i)
    if not train or not val:
        raise BertstoryError(f"cannot split {len(labels)} examples with data.val_fraction={val_fraction}: "
                             "use more data or a val_fraction nearer 0.5")
    return train, val


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_pang_lee_examples() -> Examples:
    """gensim's Pang and Lee sentences with labels 0 (neg) and 1 (pos)."""
    labelled = read_pang_lee()
    return Examples([t for t, _ in labelled], [y for _, y in labelled], 0, list(PANG_LEE.labels))


def hf_splits(dataset: str, config: str | None, split: str, val_split: str | None, explicit_val: bool):
    """``(train, validation or None)`` ``datasets.Dataset``s of a hub dataset or a ``save_to_disk`` folder.

    A folder holding a single dataset (no splits) is the training data. A missing validation split
    is an error only when it was asked for (``explicit_val``); otherwise the caller splits ``train``.
    """
    path = os.path.expanduser(os.fspath(dataset))
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "dataset_dict.json")):
        if not os.path.isfile(os.path.join(path, "dataset_info.json")):
            raise BertstoryError(f"{path} is not a datasets save_to_disk folder: give a folder written by "
                                 "Dataset.save_to_disk or DatasetDict.save_to_disk, or a hub name")
        return load_hf_dataset(path, config, split), None
    splits = available_splits(path, config)
    if split not in splits:
        raise BertstoryError(f"dataset {dataset} has no split {split!r} (splits: {', '.join(splits)}): "
                             "set data.split=")
    if val_split not in splits:
        if explicit_val:
            raise BertstoryError(f"dataset {dataset} has no split {val_split!r} (splits: {', '.join(splits)}): "
                                 "set data.val_split=, or null to hold out data.val_fraction of the training split")
        val_split = None
    train = load_hf_dataset(path, config, split)
    return train, (load_hf_dataset(path, config, val_split) if val_split else None)


def available_splits(dataset: str, config: str | None) -> list[str]:
    """Split names of a ``DatasetDict`` folder or a hub dataset."""
    import json

    if os.path.isdir(dataset):
        with open(os.path.join(dataset, "dataset_dict.json")) as f:
            return list(json.load(f).get("splits", []))
    try:
        import datasets

        return list(datasets.get_dataset_split_names(dataset, config))
    except Exception as e:  # datasets raises many kinds; all mean "cannot load"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        offline = " (bertstory runs offline: set BERTSTORY_ONLINE=1 to download)" if hub_offline() else ""
        raise BertstoryError(f"cannot load dataset {dataset} (config {config}): {msg}; check data.dataset, "
                             f"data.config and the network{offline}, or give a save_to_disk folder") from e


def hub_offline() -> bool:
    """Whether Hugging Face hub access is switched off (bertstory's default, see ``bertstory.cli``)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def label_names(ds, label_column: str) -> list[str] | None:
    """Class names of a ``ClassLabel`` column, else None."""
    feature = getattr(ds, "features", {}).get(label_column)
    names = getattr(feature, "names", None)
    return list(names) if names else None


def read_hf_examples(ds, name: str, column: str, column_b: str | None, label_column: str,
                     task: str | None = None) -> Examples:
    """Labelled rows of ``ds``; rows without usable text or with a negative label (GLUE test sets) are skipped.

    ``task`` names the GLUE task whose columns these are (for the error message).
    """
    fix = f"check data.dataset against data.task={task}" if task else None
    fixes = {column: fix or "set data.column=", label_column: "set data.label_column="}
    if column_b:
        fixes[column_b] = fix or "set data.column_b="
    columns = [column] + ([column_b] if column_b else []) + [label_column]
    check_columns(ds, name, columns, fixes)
    texts: list[Segment] = []
    labels: list[int] = []
    skipped = 0
    for row in iter_rows(ds, columns):
        text = row_segment(row, column, column_b)
        y = as_label(row[label_column], name, label_column)
        if text is None or y is None:
            skipped += 1
            continue
        texts.append(text)
        labels.append(y)
    return Examples(texts, labels, skipped, label_names(ds, label_column))


def as_label(value, name: str, label_column: str) -> int | None:
    """An integer class label, None for a missing or negative one; a real-valued label is an error."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and not value.is_integer():
        raise BertstoryError(f"dataset {name} column {label_column!r} holds real values ({value}): "
                             "train.py fine-tunes classifiers, choose a dataset with class labels")
    try:
        y = int(value)
    except (TypeError, ValueError):
        raise BertstoryError(f"dataset {name} column {label_column!r} holds {value!r}, not a class number: "
                             "set data.label_column= to the integer label column") from None
    return y if y >= 0 else None


# --------------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------------


class LabelledDataset(Dataset):
    """Item ``k``: ``(k, input_ids, token_type_ids or None, label)``."""

    def __init__(self, input_ids: list[list[int]], token_type_ids: list[bytes] | None, labels: list[int]):
        self.input_ids = input_ids
        self.token_type_ids = token_type_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, k: int):
        tt = self.token_type_ids[k] if self.token_type_ids is not None else None
        return k, self.input_ids[k], tt, self.labels[k]


class LabelledCollator:
    """:class:`SegmentCollator`'s padded batch plus ``labels`` (B,) int64."""

    def __init__(self, pad_token_id: int | None):
        self.pad = SegmentCollator(pad_token_id)

    def __call__(self, items) -> dict[str, torch.Tensor]:
        batch = self.pad([(k, ids, tt) for k, ids, tt, _ in items])
        batch["labels"] = torch.tensor([y for *_, y in items], dtype=torch.long)
        return batch


@dataclass
class Split:
    """One tokenised split."""

    input_ids: list[list[int]]
    token_type_ids: list[bytes] | None
    labels: list[int]
    truncated: int

    def dataset(self) -> LabelledDataset:
        return LabelledDataset(self.input_ids, self.token_type_ids, self.labels)


# --------------------------------------------------------------------------------------------
# the data module
# --------------------------------------------------------------------------------------------


class ClassificationDataModule(SegmentDataModule):
    """Labelled examples split into training and validation data for ``Trainer.fit``.

    Accepts every key of the ``data`` group (the analysis options) plus the training ones set in
    ``conf/train.yaml``. After :meth:`prepare_texts`: ``task`` (a :class:`bertstory.glue.Task`
    with the resolved columns, label count and names, metric), ``train`` and ``val``
    (:class:`Split`) and ``stats``, the ``data`` block of the training run's metrics.json.
    """

    def __init__(self, tokenizer, name: str, reader: str, max_length: int = 128, batch_size: int = 16,
                 num_workers: int = 0, task: str | None = None, val_split: str | None = None,
                 val_fraction: float = 0.2, val_limit: int | None = None, label_column: str = "label", seed: int = 0,
                 **corpus_options: Any):
        if reader not in ("pang_lee", "hf"):
            raise BertstoryError(f"data={name} has no labels to train on: use data=pang_lee, or data=hf with "
                                 "data.task=GLUE_TASK or a dataset with a label column")
        if corpus_options.get("pairs"):
            raise BertstoryError("data.pairs joins consecutive sentences for the analysis; to train on sentence "
                                 "pairs use data=hf with data.task= or data.column_b=")
        if task is not None and reader != "hf":
            raise BertstoryError(f"data.task={task} needs data=hf (data={name} is one fixed corpus)")
        if val_limit is not None and (isinstance(val_limit, bool) or not isinstance(val_limit, int) or val_limit < 1):
            raise BertstoryError(f"data.val_limit must be a positive integer or null, got {val_limit!r}")
        options = {**corpus_options, "pairs": False, "split": corpus_options.get("split") or "train"}
        glue = glue_task(task) if task is not None else None
        if glue is None and reader == "hf" and options.get("config") and is_glue(options.get("dataset")):
            glue = glue_task(options["config"])
        if reader == "hf":
            if glue is not None:
                options["dataset"] = options.get("dataset") or GLUE_HUB
                options["config"] = options.get("config") or glue.name
                options["column"], options["column_b"] = glue.column, glue.column_b
            if not options.get("dataset"):
                raise BertstoryError("data=hf needs data.task=GLUE_TASK (e.g. sst2) or data.dataset=NAME_OR_DIR")
        super().__init__(tokenizer, name, reader, max_length=max_length, batch_size=batch_size,
                         num_workers=num_workers, **options)
        self.glue = glue
        self.explicit_val = val_split is not None
        self.val_split = val_split or (glue.val_split if glue else "validation")
        self.val_fraction = val_fraction
        self.val_limit = val_limit
        self.label_column = label_column
        self.seed = seed
        self.task: Task | None = None
        self.train: Split | None = None
        self.val: Split | None = None

    # -- reading -------------------------------------------------------------------------------

    def read_examples(self) -> tuple[Examples, Examples, str]:
        """Training and validation examples, and how the validation data was chosen."""
        spec = self.spec
        if spec.reader == "pang_lee":
            examples = read_pang_lee_examples()
            train_idx, val_idx = stratified_split(examples.labels, self.val_fraction, self.seed)
            return examples.take(train_idx), examples.take(val_idx), f"{self.val_fraction:g} held out"
        train_ds, val_ds = hf_splits(spec.dataset, spec.config, spec.split, self.val_split, self.explicit_val)
        task = self.glue.name if self.glue else None
        train = read_hf_examples(train_ds, spec.dataset, spec.column, spec.column_b, self.label_column, task)
        if val_ds is not None:
            val = read_hf_examples(val_ds, spec.dataset, spec.column, spec.column_b, self.label_column, task)
            return train, val, f"split {self.val_split}"
        train_idx, val_idx = stratified_split(train.labels, self.val_fraction, self.seed)
        held = train.take(train_idx), train.take(val_idx)
        return replace(held[0], skipped=train.skipped), held[1], f"{self.val_fraction:g} of {spec.split} held out"

    def resolve_task(self, train: Examples, val: Examples) -> Task:
        """The task with its label count and names checked against the data."""
        spec = self.spec
        base = self.glue or (PANG_LEE if spec.reader == "pang_lee" else Task(spec.dataset, spec.column, spec.column_b))
        names = train.label_names or (list(base.labels) if base.labels else None)
        seen = max(train.labels + val.labels) + 1
        num_labels = len(names) if names else max(seen, 2)
        if self.glue is not None:
            count = len(train.label_names) if train.label_names else seen
            if count > self.glue.num_labels or (train.label_names and count != self.glue.num_labels):
                raise BertstoryError(f"dataset {spec.dataset} has {count} labels, GLUE {self.glue.name} has "
                                     f"{self.glue.num_labels}: check data.dataset against data.task")
        if seen > num_labels:
            raise BertstoryError(f"dataset {spec.dataset} has label {seen - 1} but only {num_labels} class names: "
                                 "check data.label_column")
        names = names or [str(i) for i in range(num_labels)]
        name = self.glue.name if self.glue else (self.name if spec.reader == "pang_lee" else str(spec.dataset))
        return Task(name, spec.column, spec.column_b, num_labels, base.metric, self.val_split, tuple(names))

    def prepare_texts(self) -> None:
        """Read, split and tokenise the labelled data (once; later calls do nothing)."""
        if self.train is not None:
            return
        train, val, how = self.read_examples()
        train, val = train.head(self.spec.limit), val.head(self.val_limit)
        if not train.texts or not val.texts:
            which = "training" if not train.texts else "validation"
            raise BertstoryError(f"no {which} examples in {self.spec.dataset or self.name}: check the data.* options")
        self.task = self.resolve_task(train, val)
        self.train = self._split(train)
        self.val = self._split(val)
        self.input_ids = self.train.input_ids  # the parent's view: the training segments
        self.labels = self.train.labels
        self.stats = {
            "name": self.name,
            "task": self.task.name,
            "train": len(train.labels),
            "validation": len(val.labels),
            "validation_from": how,
            "tokens": sum(map(len, self.train.input_ids)) + sum(map(len, self.val.input_ids)),
            "truncated": self.train.truncated + self.val.truncated,
            "skipped": train.skipped + val.skipped,
            "train_label_counts": label_counts(train.labels, self.task.num_labels),
            "validation_label_counts": label_counts(val.labels, self.task.num_labels),
        }
        log.info("data %s: %d training and %d validation examples (%s), %d truncated to %d tokens, %d skipped",
                 self.task.name, len(train.labels), len(val.labels), how, self.stats["truncated"],
                 self.max_length, self.stats["skipped"])

    def _split(self, examples: Examples) -> Split:
        tokens = tokenize(self.tokenizer, examples.texts, self.max_length, self.pairs, self.name)
        return Split(tokens.input_ids, tokens.token_type_ids, list(examples.labels), tokens.truncated)

    # -- batches -------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        self.prepare_texts()
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train.dataset(), batch_size=self.batch_size, shuffle=True, generator=generator,
                          collate_fn=LabelledCollator(self.tokenizer.pad_token_id), num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        self.prepare_texts()
        return DataLoader(self.val.dataset(), batch_size=self.batch_size, shuffle=False,
                          collate_fn=LabelledCollator(self.tokenizer.pad_token_id), num_workers=self.num_workers)


def is_glue(dataset: str | None) -> bool:
    """A hub name of GLUE (``glue``, ``nyu-mll/glue``)."""
    return bool(dataset) and str(dataset).rstrip("/").split("/")[-1].lower() == "glue" and not os.path.isdir(dataset)


def label_counts(labels: Sequence[int], num_labels: int) -> list[int]:
    """How many examples have each label."""
    counts = [0] * num_labels
    for y in labels:
        counts[y] += 1
    return counts


__all__ = ["ClassificationDataModule", "Examples", "GLUE", "stratified_split"]
