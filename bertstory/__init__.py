"""bertstory: per-head attention versus gradient attribution in BERT-family encoders."""

__version__ = "0.1.0"
