"""Statistics: pattern key sets, per-query formulas, torchmetrics Metrics, persistence, the run's collection."""
