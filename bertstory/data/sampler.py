"""Length-bucketed batches spread over the processes by cost (attribution grows with n^2)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from bertstory.errors import BertstoryError


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

