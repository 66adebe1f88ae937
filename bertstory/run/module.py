"""The LightningModule of an analysis: ``predict_step`` computes attention and attribution maps.

The analysis is ``Trainer.predict`` with ``inference_mode=False`` (attribution needs
gradients inside ``predict_step``). Statistics accumulate in torchmetrics Metrics
(:mod:`bertstory.stats.collection`); Lightning forbids ``self.log`` in predict hooks, so they are
computed after the epoch by :func:`bertstory.run.analysis.run` and sent to the logger then.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from bertstory.attribution import Attribution
from bertstory.errors import BertstoryError
from bertstory.models import Encoder, attention_maps
from bertstory.stats.collection import AnalysisMetrics, merge_metric_state, segment_deltas
from bertstory.stats.patterns import pattern_masks, punct_vocab_mask


class AnalysisModule(L.LightningModule):
    """Per-head attention and attribution of a frozen encoder, with running statistics.

    ``predict_step`` returns, for the writer, a dict with ``index`` (B,), ``input_ids`` and
    ``attention_mask`` (B, n), ``attention`` and ``attribution`` (B, L, H, n, n) (attribution
    None for ``attribution=none``) restricted to the segments whose maps are kept
    (dataset index < ``keep_maps``), so nothing else is held after the step; and the batch's
    progress for ``resume=true`` (:mod:`bertstory.results.shards`): ``done`` (the dataset indices of the
    whole batch) and ``metric_state``, the batch's delta of the metric states (zero-row count included);
    and ``segment_stats``, each segment's sums and counts per table (float32, in ``done``'s order).

    Each segment is added to ``batch_metrics`` alone (reset before each), whose states are then
    summed into the batch's delta and added to the running ``metrics``: the same float64 sums as
    updating ``metrics`` directly, and each segment's own sums for the per-segment statistics.
    """

    def __init__(self, encoder: Encoder, method: Attribution, tau: float = 0.5, kappa: float = 2.0,
                 keep_maps: int | None = None):
        super().__init__()
        self.encoder = encoder.model
        self.tokenizer = encoder.tokenizer
        self.method = method
        self.keep_maps = keep_maps
        self.metrics = AnalysisMetrics(encoder.layers, encoder.heads, with_attribution=method.produces_maps,
                                       tau=tau, kappa=kappa)
        self.batch_metrics = AnalysisMetrics(encoder.layers, encoder.heads, with_attribution=method.produces_maps,
                                             tau=tau, kappa=kappa)
        self.register_buffer("punct_vocab", punct_vocab_mask(encoder.tokenizer), persistent=False)
        self.cls_id = encoder.tokenizer.cls_token_id
        self.sep_id = encoder.tokenizer.sep_token_id
        if self.cls_id is None or self.sep_id is None:
            raise BertstoryError("the tokenizer has no CLS or SEP token: bertstory analyses BERT-style encoders")

    def on_predict_start(self) -> None:
        """Fix ``attribution.dtype=auto`` for this process's device before the first batch."""
        self.method.resolve_dtype(self.device, next(self.encoder.parameters()).dtype)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int = 0) -> dict[str, Tensor | None]:
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        attention = attention_maps(self.encoder, ids, mask, types)  # (B, L, H, n, n)
        result = self.method.attribute(self.encoder, ids, mask, types)
        attribution = result.maps
        check_finite(attention, batch["index"], "attention")
        if attribution is not None:
            check_finite(attribution, batch["index"], "attribution")
        masks = pattern_masks(ids, mask, self.cls_id, self.sep_id, self.punct_vocab)
        delta, records = segment_deltas(self.batch_metrics, attention, attribution, mask, masks, result.zero_rows)
        merge_metric_state(self.metrics, delta)
        keep = torch.ones_like(batch["index"], dtype=torch.bool)
        if self.keep_maps is not None:
            keep = batch["index"] < self.keep_maps
        return {
            "index": batch["index"][keep],
            "input_ids": ids[keep],
            "attention_mask": mask[keep],
            "attention": attention[keep],
            "attribution": None if attribution is None else attribution[keep],
            "done": batch["index"],
            "metric_state": delta,
            "segment_stats": records,
        }


def check_finite(maps: Tensor, index: Tensor, what: str) -> None:
    """Stop with the dataset index of the first segment whose maps hold NaN or Inf."""
    bad = ~torch.isfinite(maps).flatten(1).all(1)
    if bad.any():
        k = int(index[bad.nonzero()[0, 0]])
        raise BertstoryError(
            f"non-finite {what} in segment {k}: the model produced NaN/Inf (try attribution.dtype=float32 "
            "or check the weights)"
        )
