"""The cost-balanced batch sampler: every index once, similar lengths together, balanced ranks."""

from __future__ import annotations

import random

import pytest

from bertstory.data import CostBalancedBatchSampler, SegmentDataModule


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 128) for _ in range(n)]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 5, 101])
def test_sampler_covers_every_index_once(world_size, n):
    lengths = _lengths(n)
    seen: list[int] = []
    for rank in range(world_size):
        sampler = CostBalancedBatchSampler(lengths, batch_size=8, rank=rank, world_size=world_size)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(1 <= len(b) <= 8 for b in batches)
        if n >= world_size:
            assert len(batches) >= 1
        seen.extend(i for b in batches for i in b)
    assert sorted(seen) == list(range(n))


def test_sampler_is_deterministic():
    lengths = _lengths(77)
    a = CostBalancedBatchSampler(lengths, 4, rank=1, world_size=3)
    b = CostBalancedBatchSampler(list(lengths), 4, rank=1, world_size=3)
    assert list(a) == list(b)


def test_sampler_few_segments_many_ranks():
    # 5 segments, batch size 8, 3 ranks: one batch would leave two ranks idle
    lengths = [10, 50, 20, 40, 30]
    per_rank = [list(CostBalancedBatchSampler(lengths, 8, rank=r, world_size=3)) for r in range(3)]
    assert all(len(b) == 1 for b in per_rank)
    assert sorted(i for bs in per_rank for b in bs for i in b) == list(range(5))


def test_sampler_batches_similar_lengths():
    lengths = _lengths(400, seed=1)
    batch_size = 8
    sampler = CostBalancedBatchSampler(lengths, batch_size)

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    order = list(range(len(lengths)))
    random.Random(2).shuffle(order)
    random_batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    ours = padding(list(sampler))
    assert ours < 0.1 * padding(random_batches)
    for b in sampler:
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 10


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_sampler_cost_balance(world_size):
    lengths = _lengths(500, seed=world_size)
    sampler = CostBalancedBatchSampler(lengths, 8, world_size=world_size)
    loads = sampler.loads()
    assert sum(loads) == sum(sampler.costs)
    # LPT: the spread is at most the largest batch cost
    assert max(loads) - min(loads) <= max(sampler.costs)
    assert max(loads) <= 1.01 * sum(loads) / world_size  # round robin would give up to ~1.05
    # cost of a batch: its padded size times n^2 of its longest segment
    b = sampler.batches[0]
    assert sampler.costs[0] == len(b) * max(lengths[i] for i in b) ** 2


def test_rank_summary(tokenizer, wiki250):
    dm = SegmentDataModule(tokenizer, name="wiki", reader="wiki", limit=250, batch_size=8)
    dm.setup()
    assert dm.rank_summary() == [(250, dm.stats["tokens"])]
    summary = dm.rank_summary(world_size=3)
    assert len(summary) == 3 and all(s > 0 for s, _ in summary)
    assert sum(s for s, _ in summary) == 250
    assert sum(t for _, t in summary) == dm.stats["tokens"]
