"""``data=hf``: a Hugging Face ``datasets`` dataset, by hub name or ``save_to_disk`` folder.

:func:`iter_rows` is the one place rows are read; the analysis (:func:`read_hf`) and the
fine-tuning data (:mod:`bertstory.finetune.data`) both use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from bertstory.data.segments import Segment, take_usable
from bertstory.errors import BertstoryError

ROWS_PER_READ = 1024


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



def check_columns(ds, dataset: str, columns: Sequence[str], fixes: dict[str, str] | None = None) -> None:
    """Refuse a dataset without one of ``columns``; ``fixes`` maps a column to the fix named in the message."""
    names = list(ds.column_names)
    for column in columns:
        if column not in names:
            fix = (fixes or {}).get(column, "set data.column=")
            raise BertstoryError(f"dataset {dataset} has no column {column!r} (columns: {', '.join(names)}): {fix}")


def usable_text(value: Any) -> str | None:
    """A row's text stripped, or None when it is missing, not a string or blank."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def iter_rows(ds, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Each row of ``ds`` as ``{column: value}`` for ``columns``, read ``ROWS_PER_READ`` rows at a time."""
    for start in range(0, len(ds), ROWS_PER_READ):
        block = ds[start : start + ROWS_PER_READ]
        for i in range(len(block[columns[0]])):
            yield {c: block[c][i] for c in columns}


def row_segment(row: dict[str, Any], column: str, column_b: str | None) -> Segment | None:
    """A row's text, or its ``(A, B)`` pair with ``column_b``; None when a text is unusable."""
    a = usable_text(row[column])
    if column_b is None:
        return a
    b = usable_text(row[column_b])
    return None if a is None or b is None else (a, b)


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
    check_columns(ds, dataset, columns, {column_b: "set data.column_b="} if column_b else None)
    return take_usable((row_segment(row, column, column_b) for row in iter_rows(ds, columns)), limit)
