"""``data=text``: one segment per line of a UTF-8 file (blank lines skipped and counted)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from bertstory.data.segments import take_usable
from bertstory.errors import BertstoryError


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

