"""Benchmarks: load scenarios measured as ratios against a canary run side by side (DESIGN §7)."""
