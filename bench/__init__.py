"""Benchmarks (not tests): each prints ratios measured against a baseline run beside it."""
