"""Benchmarks, outside the runtime package: each says what it measures and on which host."""
