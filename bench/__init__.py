"""Benchmarks: load scenarios measured as ratios against a canary run side by side (docs/performance.md)."""
