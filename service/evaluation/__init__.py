"""Segmentation metrics and post-processing tuning (numpy only)."""
