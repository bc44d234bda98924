"""Inference: runtime sessions, batching, post-processing and RLE (no torch, no HTTP)."""
