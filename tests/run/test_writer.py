"""The map writer writes shards on a background thread: all of them are on disk, complete, when the epoch ends,
and a failed write stops the run."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

import bertstory.run.writer as writer_module
from bertstory.results.shards import iter_maps, shard_paths
from bertstory.run.writer import MapWriter


def prediction(first: int, B: int = 2, n: int = 5) -> dict:
    g = torch.Generator().manual_seed(first)
    maps = torch.rand(B, 2, 3, n, n, generator=g)
    return {"index": torch.arange(first, first + B), "input_ids": torch.randint(0, 99, (B, n), generator=g),
            "attention_mask": torch.ones(B, n, dtype=torch.long), "attention": maps, "attribution": maps.flip(-1),
            "done": torch.arange(first, first + B), "metric_state": {"m.total": torch.ones(2, 3)}}


def test_background_writes_are_all_on_disk_at_epoch_end(tmp_path, monkeypatch):
    threads = set()
    original = writer_module.save_shard

    def save(*a, **kw):
        threads.add(threading.current_thread().name)
        return original(*a, **kw)

    monkeypatch.setattr(writer_module, "save_shard", save)
    w = MapWriter(tmp_path, dtype="float32")
    trainer = SimpleNamespace(global_rank=0)
    w.on_predict_start(trainer, None)
    preds = [prediction(2 * b) for b in range(5)]
    for b, p in enumerate(preds):
        w.write_on_batch_end(trainer, None, p, None, None, b)
    w.on_predict_end(trainer, None)
    assert len(shard_paths(tmp_path)) == 5 and w.segments_written == 10
    assert all(name.startswith("bertstory-shards") for name in threads)
    got = {k: fields for k, fields, _ in iter_maps(tmp_path)}
    for p in preds:
        for row, k in enumerate(p["index"].tolist()):
            assert torch.equal(got[k]["attention"], p["attention"][row])
            assert torch.equal(got[k]["attribution"], p["attribution"][row])


def test_a_failed_write_stops_the_run(tmp_path, monkeypatch):
    def fail(*a, **kw):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(writer_module, "save_shard", fail)
    w = MapWriter(tmp_path)
    trainer = SimpleNamespace(global_rank=0)
    w.on_predict_start(trainer, None)
    w.write_on_batch_end(trainer, None, prediction(0), None, None, 0)
    with pytest.raises(OSError, match="disk full"):
        w.on_predict_end(trainer, None)
