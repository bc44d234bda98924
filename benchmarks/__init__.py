"""Benchmarks: measured on real data and on this host, outside the runtime package."""
