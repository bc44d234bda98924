"""Benchmarks behind `make bench` and `make bench-neu`; they print JSON to paste into README."""
