"""Datasets, the collator and the data loader Lightning sees."""

from __future__ import annotations

import torch

from bertstory.data import SegmentCollator, SegmentDataModule


def test_collate_pads_right():
    collate = SegmentCollator(pad_token_id=7)
    batch = collate([(4, [101, 5, 6, 102], None), (9, [101, 102], bytes([0, 1]))])
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [4, 9]
    assert batch["input_ids"].tolist() == [[101, 5, 6, 102], [101, 102, 7, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0], [0, 1, 0, 0]]
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].dtype == torch.long and batch[key].shape == (2, 4)


def test_dataloader_batches_match_tokens(tokenizer):
    dm = SegmentDataModule(tokenizer, name="wiki", reader="wiki", limit=40, batch_size=6)
    dm.setup()
    seen = []
    for batch in dm.predict_dataloader():
        n = batch["input_ids"].shape[1]
        assert n == int(batch["attention_mask"].sum(1).max())
        for row, k in enumerate(batch["index"].tolist()):
            ids = dm.input_ids[k]
            assert batch["input_ids"][row, : len(ids)].tolist() == ids
            assert (batch["input_ids"][row, len(ids) :] == tokenizer.pad_token_id).all()
            seen.append(k)
    assert sorted(seen) == list(range(40))


def test_trainer_predict_uses_our_sampler(tokenizer):
    import lightning as L

    class Echo(L.LightningModule):
        def predict_step(self, batch, batch_idx):
            return batch["index"]

    dm = SegmentDataModule(tokenizer, name="pang_lee", reader="pang_lee", limit=37, batch_size=5)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        inference_mode=False,
    )
    out = trainer.predict(Echo(), datamodule=dm)
    assert sorted(torch.cat(out).tolist()) == list(range(37))
    assert [len(x) for x in out] == [len(b) for b in dm.batch_sampler()]
