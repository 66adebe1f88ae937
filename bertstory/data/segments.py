"""What every reader returns: segments (texts or ``(A, B)`` pairs), the first ``limit`` usable ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

Segment = str | tuple[str, str]
T = TypeVar("T")


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
