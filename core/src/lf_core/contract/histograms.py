"""Histogram buckets shared by the ingestor's and the runtimes' metrics (no imports: the runtime loads it at start)."""

from __future__ import annotations

DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Seconds: sub-millisecond (a warm trivial call) through minutes (the longest sync timeouts)."""
