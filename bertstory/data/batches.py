"""Tokenised segments as a Dataset, and the collator that pads them into batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset


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


