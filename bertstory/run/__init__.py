"""The run: the LightningModule, the analysis itself, distributed helpers, resume, the shard store, loggers."""
