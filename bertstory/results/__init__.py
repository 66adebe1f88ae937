"""Results: the typed view of a finished run, summary tables, comparisons, sweeps and the report.

>>> from bertstory import results
>>> run = results.load("outputs/2025-01-01/12-00-00")
>>> run.metrics.table("discrepancy/js")[5][3]
"""

from bertstory.results.run import Results, Segment, load
from bertstory.results.run_metrics import RunMetrics
from bertstory.results.shards import SegmentStats

__all__ = ["Results", "RunMetrics", "Segment", "SegmentStats", "load"]
