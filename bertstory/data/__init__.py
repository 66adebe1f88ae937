"""Data: readers (wiki, text, pang_lee, hf), the corpus options, tokenisation, the sampler, the DataModule.

``conf/data/*.yaml`` build :class:`~bertstory.data.datamodule.SegmentDataModule` with ``_target_``.
"""

from bertstory.data.batches import SegmentCollator, SegmentDataset
from bertstory.data.corpus import READERS, Corpus, CorpusSpec, pair_up, read_corpus
from bertstory.data.datamodule import SegmentDataModule
from bertstory.data.sampler import CostBalancedBatchSampler, segment_cost

__all__ = ["READERS", "Corpus", "CorpusSpec", "CostBalancedBatchSampler", "SegmentCollator", "SegmentDataModule",
           "SegmentDataset", "pair_up", "read_corpus", "segment_cost"]
