"""Training, evaluation, export and publication of segmentation nets (worker extra: torch)."""
