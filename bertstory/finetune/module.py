"""Sequence classification around a loaded encoder, as a LightningModule for ``Trainer.fit``.

:func:`build_classifier` wraps the encoder of a ``model`` config in the matching
``AutoModelForSequenceClassification`` (eager attention, the encoder's weights, a fresh seeded
head), so that ``save_pretrained`` leaves a folder that ``analyze.py model=hf`` reads (its
loader strips the head) and that transformers loads as a classifier.

:class:`FineTuneModule` trains it with AdamW (no weight decay on biases and LayerNorm weights),
a linear warm-up and a linear decay to zero, and logs the training loss and the validation loss,
accuracy, F1 (of class 1 for two labels, macro for more) and Matthews correlation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import lightning as L
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassF1Score, MulticlassMatthewsCorrCoef

from bertstory.errors import BertstoryError
from bertstory.finetune.glue import check_metric
from bertstory.models import Encoder


def build_classifier(encoder: Encoder, num_labels: int, labels: Sequence[str] | None = None, seed: int = 0):
    """A trainable ``AutoModelForSequenceClassification`` holding ``encoder``'s weights and a seeded new head."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(encoder.config)
    config.num_labels = num_labels
    names = list(labels) if labels else [f"LABEL_{i}" for i in range(num_labels)]
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    config.problem_type = "single_label_classification"
    torch.manual_seed(seed)
    try:
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    except ValueError as e:
        raise BertstoryError(f"transformers has no sequence-classification head for {type(encoder.model).__name__} "
                             "models: fine-tune a BERT, RoBERTa or ELECTRA-type encoder") from e
    missing, _ = model.base_model.load_state_dict(encoder.model.state_dict(), strict=False)
    if missing:
        raise BertstoryError(f"the classifier for {encoder.name} lacks {len(missing)} encoder weights (e.g. "
                             f"{missing[0]}): fine-tune a BERT, RoBERTa or ELECTRA-type encoder")
    dtype = next(encoder.model.parameters()).dtype
    return model.to(dtype).train()


def task_metrics(num_labels: int, prefix: str = "val/") -> MetricCollection:
    """Accuracy, F1 and Matthews correlation of predicted classes (``acc``, ``f1``, ``mcc``)."""
    f1 = BinaryF1Score() if num_labels == 2 else MulticlassF1Score(num_labels, average="macro")
    return MetricCollection({
        "acc": MulticlassAccuracy(num_labels, average="micro"),
        "f1": f1,
        "mcc": MulticlassMatthewsCorrCoef(num_labels),
    }, prefix=prefix)


def linear_warmup_decay(warmup_steps: int, total_steps: int):
    """LR factor at optimiser step s: ``s / warmup_steps`` while warming up, then linear down to 0 at ``total_steps``.

    (The schedule of ``transformers.get_linear_schedule_with_warmup``.)
    """
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: matrices decay, vectors (biases, LayerNorm weights) do not."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for _, p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


class FineTuneModule(L.LightningModule):
    """Fine-tunes an ``AutoModelForSequenceClassification`` (all weights) on labelled batches.

    Batches are :class:`bertstory.finetune.data.LabelledCollator` dicts. ``metric`` (acc, f1, mcc or loss)
    is what the checkpoint keeps the best of; ``warmup`` is the share of all optimiser steps spent
    warming up the learning rate.
    """

    def __init__(self, model: torch.nn.Module, num_labels: int, metric: str = "acc", lr: float = 5e-5,
                 weight_decay: float = 0.01, warmup: float = 0.1, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__()
        if metric != "loss":
            check_metric(metric)
        if not lr > 0:
            raise BertstoryError(f"optim.lr must be positive, got {lr}")
        if not 0 <= warmup < 1:
            raise BertstoryError(f"optim.warmup is the share of steps spent warming up: choose 0 <= warmup < 1, "
                                 f"got {warmup}")
        self.save_hyperparameters({"num_labels": int(num_labels), "metric": str(metric), "lr": float(lr),
                                   "weight_decay": float(weight_decay), "warmup": float(warmup),
                                   "betas": [float(b) for b in betas], "eps": float(eps)})
        self.model = model
        self.val_metrics = task_metrics(num_labels)

    @property
    def monitor(self) -> str:
        """The logged name of the metric the checkpoint follows."""
        return f"val/{self.hparams.metric}"

    @property
    def monitor_mode(self) -> str:
        return "min" if self.hparams.metric == "loss" else "max"

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          token_type_ids=batch["token_type_ids"], labels=batch.get("labels"))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self(batch)
        self.log("train/loss", out.loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(batch["labels"]), sync_dist=True)
        return out.loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self(batch)
        self.val_metrics.update(out.logits.argmax(-1), batch["labels"])
        self.log("val/loss", out.loss, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"]), sync_dist=True)
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(decay_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas),
                                      eps=hp.eps)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = linear_warmup_decay(round(hp.warmup * total), total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
