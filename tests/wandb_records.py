"""Read the run record (id, name, group) of an offline W&B run from its ``run-*.wandb`` file.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of
LevelDB-log records (crc32 4 bytes, length 2, type 1: full, first, middle, last), each payload a
``wandb_internal_pb2.Record``. wandb >= 0.19 ships no Python reader for it any more.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def log_payloads(data: bytes) -> Iterator[bytes]:
    """The payloads of a LevelDB-format log (after the 7-byte file header)."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B transaction log")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


def wandb_run_records(run_dir: Path) -> list[dict[str, str]]:
    """``[{"id", "name", "group"}]`` of the run records in an ``offline-run-*`` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for path in Path(run_dir).glob("run-*.wandb"):
        for payload in log_payloads(path.read_bytes()):
            record = pb.Record()
            record.ParseFromString(payload)
            if record.WhichOneof("record_type") == "run":
                out.append({"id": record.run.run_id, "name": record.run.display_name, "group": record.run.run_group})
    return out
