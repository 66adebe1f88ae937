"""Classification tasks for ``train.py``: text columns, label count and the metric that picks the best epoch.

GLUE tasks follow the ``glue`` dataset on the Hugging Face hub (``datasets.load_dataset("glue", name)``).
STS-B is left out: it is a regression task. ``pang_lee`` is the labelled movie-review sample
shipped with gensim (:func:`bertstory.data.pang_lee.read_pang_lee`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bertstory.errors import BertstoryError

METRICS = ("acc", "f1", "mcc")


@dataclass(frozen=True)
class Task:
    """One classification task.

    ``column_b`` is the second text of sentence-pair tasks (``[CLS] A [SEP] B [SEP]``);
    ``metric`` (one of ``METRICS``) selects the checkpoint; ``val_split`` is the split validated on.
    """

    name: str
    column: str
    column_b: str | None = None
    num_labels: int = 2
    metric: str = "acc"
    val_split: str = "validation"
    labels: tuple[str, ...] | None = None


GLUE = {
    "cola": Task("cola", "sentence", metric="mcc", labels=("unacceptable", "acceptable")),
    "sst2": Task("sst2", "sentence", labels=("negative", "positive")),
    "mrpc": Task("mrpc", "sentence1", "sentence2", metric="f1", labels=("not_equivalent", "equivalent")),
    "qqp": Task("qqp", "question1", "question2", metric="f1", labels=("not_duplicate", "duplicate")),
    "mnli": Task("mnli", "premise", "hypothesis", num_labels=3, val_split="validation_matched",
                 labels=("entailment", "neutral", "contradiction")),
    "qnli": Task("qnli", "question", "sentence", labels=("entailment", "not_entailment")),
    "rte": Task("rte", "sentence1", "sentence2", labels=("entailment", "not_entailment")),
    "wnli": Task("wnli", "sentence1", "sentence2", labels=("not_entailment", "entailment")),
}

PANG_LEE = Task("pang_lee", "text", labels=("neg", "pos"))

REGRESSION = {"stsb": "STS-B is a regression task (similarity scores), not classification"}


def glue_task(name: str) -> Task:
    """The GLUE task called ``name`` (case-insensitive; ``sst-2`` and ``sst2`` both work)."""
    key = str(name).lower().replace("-", "")
    if key in REGRESSION:
        raise BertstoryError(f"data.task={name}: {REGRESSION[key]}; train.py fine-tunes classifiers, "
                             f"choose one of {', '.join(GLUE)}")
    if key not in GLUE:
        raise BertstoryError(f"unknown GLUE task data.task={name}: choose one of {', '.join(GLUE)}")
    return GLUE[key]


def check_metric(metric: str) -> str:
    """``metric`` if it is one of ``METRICS``, else a BertstoryError naming them."""
    if metric not in METRICS:
        raise BertstoryError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")
    return metric
